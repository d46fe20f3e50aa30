namespace ActorInfer.Actors.Planner;

/// <summary>
/// Conservative block sizing: how far the compute tier's budget fell below its level at each block's start while the
/// block ran, over the last <see cref="Blocks"/> blocks. The headroom a new block's firm parts leave (its geometry and
/// cache: the weights fill the rest) is the deepest of those falls (how far) times the share of the blocks that saw one
/// (how often), at most <see cref="MaxHeadroom"/>: pressure that came once in eight blocks costs an eighth of its depth,
/// pressure in every block all of it.
/// </summary>
public sealed class PressureHistory(int blocks)
{
    /// <summary>A new block's firm parts are never planned for less than a tenth of the budget.</summary>
    public const double MaxHeadroom = 0.9;

    private readonly Queue<double> _falls = new();
    private long? _startBudget;
    private long _lowest;

    public int Blocks { get; } = blocks;

    /// <summary>The fraction of the budget a new block leaves free; 0 with no history (or none asked for).</summary>
    public double Headroom
    {
        get
        {
            if (Blocks <= 0 || _falls.Count == 0) return 0;
            var deepest = _falls.Max();
            var often = (double)_falls.Count(f => f > 0) / _falls.Count;
            return Math.Min(MaxHeadroom, deepest * often);
        }
    }

    /// <summary>A block started under this budget (bytes of the compute tier).</summary>
    public void BlockStarted(long budget)
    {
        _startBudget = budget;
        _lowest = budget;
    }

    /// <summary>The budget changed (while a block runs, a fall counts).</summary>
    public void Budget(long budget)
    {
        if (_startBudget is not null) _lowest = Math.Min(_lowest, budget);
    }

    /// <summary>The block ended: its deepest fall joins the history.</summary>
    public void BlockEnded()
    {
        if (Blocks <= 0 || _startBudget is not { } start) return;
        _falls.Enqueue(start > 0 ? Math.Clamp((double)(start - _lowest) / start, 0, 1) : 0);
        while (_falls.Count > Blocks) _falls.Dequeue();
        _startBudget = null;
    }
}
