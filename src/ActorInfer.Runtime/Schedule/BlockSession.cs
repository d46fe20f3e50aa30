using ActorInfer.Model.Generation;

namespace ActorInfer.Runtime.Schedule;

/// <summary>
/// A placed block that a driver runs position by position in the zig-zag order: for each step, for each schedule
/// layer (input embedding, decoder layers, output head), for each GPU batch taking part in the step. A driver
/// that names the position it expects (the layer actors do) is checked against the schedule, so the work order
/// cannot drift from what the prefetching assumed.
/// </summary>
public sealed class BlockSession : IDisposable
{
    private readonly BlockStep _run;
    private readonly GpuBatch[] _batches;

    private readonly IReadOnlyList<Placement.BatchShape> _shapes;

    internal BlockSession(BlockStep run, GpuBatch[] batches, int scheduleLayers, Planning.Policy policy, IReadOnlyList<Placement.BatchShape> shapes)
    {
        _run = run;
        _batches = batches;
        ScheduleLayers = scheduleLayers;
        Policy = policy;
        _shapes = shapes;
    }

    /// <summary>The policy the block was placed with (its geometry and cache fractions).</summary>
    public Planning.Policy Policy { get; }

    /// <summary>The geometry a batch was placed with.</summary>
    public Placement.BatchShape Shape(int batch) => _shapes[batch];

    /// <summary>Whether the step in progress is at a layer boundary (or no step is in progress).</summary>
    public bool AtLayerBoundary => !InStep || _run.AtLayerBoundary;

    /// <summary>
    /// Frees a GPU batch now: between steps, or within a step at a layer boundary or in the output head, on either side
    /// of the cursor (it leaves the step, the leading batch as any other; a later step must not name it). Within a layer
    /// before the last, which a block's batches leave only when it ends (a failure), the step ends with it.
    /// </summary>
    public void DropNow(int batch)
    {
        if (InStep && _run.Active.Any(b => b.Index.Value == batch))
        {
            if (_run.AtLayerBoundary) _run.Remove([_batches[batch]]);
            else if (_run.Current is { } at && at.Layer.Value == ScheduleLayers - 1) _run.RemoveAhead([_batches[batch]]);
            else _run.End();
        }
        _batches[batch].Dispose();
    }

    /// <summary>Moves the weights for a new plan (see <see cref="OffloadRuntime.Replace"/>).</summary>
    internal long ReplaceWeights(Placement.PlacementPlan plan, Action? moved = null) => _run.ReplaceWeights(plan, moved);

    /// <summary>Lets grown weights go down to an allowance (see <see cref="OffloadRuntime.TrimGrowth"/>).</summary>
    internal long TrimGrownWeights(Placement.PlacementPlan inForce, long allowance) => _run.TrimGrownWeights(inForce, allowance);

    /// <summary>Input embedding (0), the decoder layers (1 .. L) and the output head (L + 1).</summary>
    public int ScheduleLayers { get; }

    public int BatchCount => _batches.Length;

    public IReadOnlyList<SequenceState> Sequences(int batch) => _batches[batch].Sequences;

    /// <summary>Whether the output head leaves the chosen tokens pending for <see cref="TakeTokens"/> (see <see cref="BlockStep.DeferTokens"/>).</summary>
    public bool DeferTokens
    {
        get => _run.DeferTokens;
        set => _run.DeferTokens = value;
    }

    /// <summary>The tokens the output head chose for a batch and left pending; the caller completes or disposes them.</summary>
    public PendingTokens? TakeTokens(int batch)
    {
        var tokens = _batches[batch].Tokens;
        _batches[batch].Tokens = null;
        return tokens;
    }

    /// <summary>Runs a whole step over every batch.</summary>
    public void RunStep(TokenStep step) => _run.Run(step);

    /// <summary>Starts a step over the given batches (by index, in the order they will be run at each layer).</summary>
    public void Begin(TokenStep step, IReadOnlyList<int> batches) => _run.Begin(step, batches.Select(b => _batches[b]).ToArray());

    public bool InStep => _run.Current is not null;

    public TokenStep Step => _run.Step;

    /// <summary>Runs the next position, which must be (<paramref name="scheduleLayer"/>, <paramref name="batch"/>).</summary>
    /// <param name="mayYield">
    /// A decoder layer of a one-batch step whose cache lives on the device, written and attended in place, may stop at a
    /// yield point while a budget change is on its way (<see cref="OffloadRuntime.Changes"/>): nothing of it is kept
    /// (writing this step's keys and values again, a prefill's for the whole prompt, writes the same), the cursor stays,
    /// and the position is at a layer boundary for the change.
    /// </param>
    /// <returns>False when it stopped at a yield point: run the same position again.</returns>
    public bool Run(int scheduleLayer, int batch, bool mayYield = false)
    {
        if (_run.Current is not { } at)
            throw new InvalidOperationException($"no step is in progress (asked for schedule layer {scheduleLayer}, batch {batch})");
        var expected = _run.Active[at.Batch.Value].Index.Value;
        if (at.Layer.Value != scheduleLayer || expected != batch)
            throw new InvalidOperationException(
                $"out of schedule: asked for schedule layer {scheduleLayer}, batch {batch}; the schedule is at layer {at.Layer.Value}, batch {expected}");
        try
        {
            return _run.RunCurrent(mayYield);
        }
        catch
        {
            _run.End();
            throw;
        }
    }


    /// <summary>Abandons the step in progress (completes its transfers).</summary>
    public void EndStep() => _run.End();

    public void Dispose()
    {
        _run.End();
        foreach (var b in _batches) b.Dispose();
    }
}
