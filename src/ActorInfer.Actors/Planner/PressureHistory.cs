namespace ActorInfer.Actors.Planner;

/// <summary>
/// Conservative block sizing: how low the compute tier's budget fell below its level at each block's start while the
/// block ran, over the last <see cref="Blocks"/> blocks. A new block's firm parts (its geometry and cache: the weights fill
/// the rest) are planned for the budget less its excess over the lowest of those falls (how far, an absolute level, the
/// same whatever the budget when the block starts), times the share of the blocks that saw a fall (how often), at most
/// <see cref="MaxHeadroom"/> of the budget: pressure that came once in eight blocks costs an eighth of its depth,
/// pressure in every block all of it. A <paramref name="floor"/> (a lower-priority model's memory floor on a node of
/// several: the least its share falls to) is the history's prior: it starts as <see cref="Blocks"/> falls to the floor, so
/// that the first block's firm parts are planned for the floor, and each block that ends without a fall pushes one of them
/// out. A model whose blocks keep seeing falls to its floor keeps planning for it; one whose blocks run undisturbed (a share
/// that stays high, blocks that are short beside the bursts) learns to plan for the budget it has.
/// </summary>
public sealed class PressureHistory(int blocks, long? floor = null)
{
    /// <summary>A new block's firm parts are never planned for less than a tenth of the budget.</summary>
    public const double MaxHeadroom = 0.9;

    private readonly Queue<long?> _lows = new(floor is { } f && blocks > 0 ? Enumerable.Repeat<long?>(Math.Max(0, f), blocks) : []);
    private long? _startBudget;
    private long _lowest;

    public int Blocks { get; } = blocks;

    /// <summary>
    /// The budget a new block's firm parts are planned for, under <paramref name="budget"/>: the budget itself with no fall
    /// in the history (a floor's prior counts as falls until blocks push it out) or with no history asked for.
    /// </summary>
    public long FirmFor(long budget)
    {
        if (Blocks <= 0 || budget <= 0) return budget;
        var falls = _lows.Where(l => l is not null).Select(l => l!.Value).ToArray();
        if (falls.Length == 0) return budget;
        var often = (double)falls.Length / _lows.Count;
        var learned = budget - (long)(Math.Max(0, budget - falls.Min()) * often);
        return Math.Max(learned, Math.Max(1, budget - (long)(budget * MaxHeadroom)));
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

    /// <summary>The block ended: the lowest budget it saw joins the history if it fell below its start.</summary>
    public void BlockEnded()
    {
        if (Blocks <= 0 || _startBudget is not { } start) return;
        _lows.Enqueue(_lowest < start ? Math.Max(0, _lowest) : null);
        while (_lows.Count > Blocks) _lows.Dequeue();
        _startBudget = null;
    }
}
