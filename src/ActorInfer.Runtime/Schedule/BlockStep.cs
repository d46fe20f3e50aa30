using ActorInfer.Model.Generation;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Placement;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Schedule;

/// <summary>
/// One step (the prefill or one decoding step) over a block in zig-zag order: for each layer, for each GPU batch,
/// the next layer's weights and the next batch's cache and hidden state are loaded while this batch computes, and
/// this batch's outputs are stored; the previous batch's stores are completed after this batch's compute.
/// </summary>
internal sealed class BlockStep(OffloadRuntime engine, IReadOnlyList<ScheduleLayer> layers, WeightStore weights, PlacementPlan plan,
    IReadOnlyList<GpuBatch> batches, Func<IReadOnlyList<int>, string> decode)
{
    private readonly TierSet _tiers = engine.Tiers;
    private readonly ICopyEngine _copies = engine.Copies;
    private readonly LayerAttention _attention = new(engine);
    private Device Device => _tiers.Device.Device;

    // The state of the step in progress: where the cursor is, and what has been loaded for it and the next one.
    private IReadOnlyList<GpuBatch> _active = [];
    private TokenStep _step;
    private BlockCursor? _cursor;
    private Transfers? _weightTransfers;
    private LoadedWeights? _current;
    private Transfers? _nextWeightTransfers;
    private LoadedWeights? _nextWeights;
    private PositionInputs? _inputs;
    private Transfers? _previousStores;

    /// <summary>The (schedule layer, position among the step's batches) that <see cref="RunCurrent"/> computes next; null when the step is done.</summary>
    public BlockCursor? Current => _cursor;

    /// <summary>The batches of the step in progress, in their zig-zag order.</summary>
    public IReadOnlyList<GpuBatch> Active => _active;

    public TokenStep Step => _step;

    /// <summary>
    /// Whether the output head leaves each batch's chosen tokens pending (<see cref="GpuBatch.Tokens"/>) for the
    /// driver to complete once they reach the host, instead of waiting for them: a driver that reads its mail
    /// meanwhile. On a CPU device the tokens are there at once either way.
    /// </summary>
    public bool DeferTokens { get; set; }

    /// <summary>Runs a whole step over <paramref name="active"/> (by default every batch).</summary>
    public void Run(TokenStep step, IReadOnlyList<GpuBatch>? active = null)
    {
        Begin(step, active ?? batches);
        try
        {
            while (_cursor is not null) RunCurrent();
        }
        finally
        {
            End();
        }
    }

    /// <summary>Starts a step: loads the first layer's weights and the first batch's inputs.</summary>
    public void Begin(TokenStep step, IReadOnlyList<GpuBatch> active)
    {
        if (_cursor is not null) throw new InvalidOperationException($"{_step} is still in progress");
        if (active.Count == 0) throw new ArgumentException("a step needs at least one batch");
        using var hostSpan = engine.Timeline?.HostSpan(HostLane, $"begin {step}");
        using var scope = NewDisposeScope();
        using var inference = inference_mode();
        _active = active;
        _step = step;
        var cursor = BlockCursor.First(layers.Count, active.Count);
        _weightTransfers = new Transfers(_copies, _tiers);
        _current = weights.Load(cursor.Layer, _weightTransfers);
        _inputs = Prepare(cursor, step);
        _previousStores = new Transfers(_copies, _tiers);
        _cursor = cursor;
    }

    /// <summary>
    /// Computes the current (layer, batch) while the next one's weights and inputs load, then moves the cursor on.
    /// Each position has its own dispose scope, so a driver may run positions from separate messages. It runs in
    /// libtorch's inference mode, so that no op does autograd's bookkeeping (version counters, view tracking), which
    /// nothing here uses; the tensors it makes cannot be changed in place outside inference mode (the tiers make their
    /// buffers outside it, the CPU copy engine copies inside it).
    /// </summary>
    /// <param name="mayYield">See <see cref="BlockSession.Run"/>.</param>
    /// <returns>False when the position stopped at a yield point (the cursor stays; run it again).</returns>
    public bool RunCurrent(bool mayYield = false)
    {
        if (_cursor is not { } cursor) throw new InvalidOperationException("no step is in progress");
        // On a trace: the host's time for the position (its compute, and loading what the next one needs).
        using var hostSpan = engine.Timeline?.HostSpan(HostLane, $"{layers[cursor.Layer.Value].Kind} {cursor.Layer.Value} {_active[cursor.Batch.Value].Index}");
        using var scope = NewDisposeScope();
        using var inference = inference_mode();
        var step = _step;
        var next = cursor.Next();
        PositionInputs? nextInputs = null;
        if (next is { } n)
        {
            // The next layer's weights load while this layer computes (the double buffer holds two layers at most):
            // their buffers are taken with the first batch, their copies issued a share per batch, after that
            // batch's own inputs, so that the batch's small loads never queue behind more than one share. A position
            // run again after a yield has them already.
            if (cursor.Batch.Value == 0 && cursor.Layer.Value + 1 < layers.Count && _nextWeights is null)
            {
                _nextWeightTransfers = new Transfers(_copies, _tiers);
                _nextWeights = weights.Load(new LayerIndex(cursor.Layer.Value + 1), _nextWeightTransfers, inShares: true);
            }
            // With one batch, the next position reads this compute's output: load it after.
            if (n.Batch != cursor.Batch) nextInputs = Prepare(n, step);
            _nextWeights?.IssueThrough((cursor.Batch.Value + 1.0) / cursor.BatchCount);
        }
        _weightTransfers!.BeforeCompute();
        _inputs!.Transfers.BeforeCompute();
        var stores = new Transfers(_copies, _tiers);
        var computeSpan = engine.Timeline?.HostSpan(HostComputeLane, "compute");
        var computed = Compute(cursor, step, _current!, _inputs, stores, mayYield);
        computeSpan?.Dispose();
        if (!computed)
        {
            // Nothing was stored (a yielding layer attends its cache in place), nothing of the next position prepared (one
            // batch): the inputs stay for the position's next run.
            stores.Complete();
            engine.Changes.Yielded();
            return false;
        }
        _inputs.Transfers.Complete();
        _inputs = null;
        _previousStores!.Complete();
        _previousStores = stores;
        if (next is not { } following)
        {
            _inputs = nextInputs;
            End(completed: true);
            return true;
        }
        if (following.Layer != cursor.Layer)
        {
            _nextWeights!.IssueThrough(1);
            weights.Release(_current!, cursor.Layer);
            _weightTransfers.Complete();
            _current = _nextWeights!;
            _weightTransfers = _nextWeightTransfers!;
            _nextWeights = null;
            _nextWeightTransfers = null;
        }
        _inputs = nextInputs ?? Prepare(following, step);
        _cursor = following;
        return true;
    }

    private const string HostLane = Cuda.CudaTimeline.HostPositionsLane, HostComputeLane = Cuda.CudaTimeline.HostComputeLane;

    /// <summary>Whether the step in progress is at the start of a layer (its first batch not yet computed).</summary>
    public bool AtLayerBoundary => _cursor is { Batch.Value: 0 };

    /// <summary>
    /// Takes GPU batches out of the step in progress at a layer boundary (they leave the block: the caller frees
    /// them). When the layer's first batch leaves, the inputs loaded for it are released and the next one's loaded; the
    /// step ends when no batch is left. The stores still in flight from the previous layer are completed first (they
    /// may write the batches).
    /// </summary>
    public void Remove(IReadOnlyCollection<GpuBatch> leaving)
    {
        if (_cursor is not { } cursor || cursor.Batch.Value != 0)
            throw new InvalidOperationException("GPU batches leave a step only at a layer boundary");
        Leave(cursor, leaving);
    }

    /// <summary>
    /// Takes GPU batches out of the step in progress in its last layer (the output head), on either side of the cursor:
    /// batches whose head has run have finished the step, the others leave before it (the caller frees them). Nothing
    /// of a later layer is loaded there; the inputs prepared for a leaving cursor batch are released, and the step ends
    /// when no batch is left to run.
    /// </summary>
    public void RemoveAhead(IReadOnlyCollection<GpuBatch> leaving)
    {
        if (_cursor is not { } cursor || cursor.Layer.Value != layers.Count - 1)
            throw new InvalidOperationException("GPU batches leave a step ahead of its cursor only in its last layer");
        Leave(cursor, leaving);
    }

    /// <summary>
    /// Removes <paramref name="leaving"/> from the step at <paramref name="cursor"/>, where no weights of a later layer
    /// are loaded for them: the cursor keeps its batch (moved down past the batches before it that left) or, when that
    /// batch leaves, goes to the next one left, whose inputs are then loaded.
    /// </summary>
    private void Leave(BlockCursor cursor, IReadOnlyCollection<GpuBatch> leaving)
    {
        var at = cursor.Batch.Value;
        var before = _active.Take(at).Count(leaving.Contains);
        var cursorLeaves = leaving.Contains(_active[at]);
        _previousStores!.Complete();
        _active = _active.Where(b => !leaving.Contains(b)).ToArray();
        var next = at - before;
        if (next >= _active.Count)
        {
            End();
            return;
        }
        var moved = cursor with { Batch = new GpuBatchIndex(next), BatchCount = _active.Count };
        _cursor = moved;
        if (!cursorLeaves) return;
        _inputs!.Transfers.Complete();
        using var scope = NewDisposeScope();
        _inputs = Prepare(moved, _step);
    }

    /// <summary>
    /// Re-places the weights for <paramref name="plan"/> between steps or at a layer boundary: waits for the weight
    /// copies in flight, moves the weights, and loads the current layer again from its new home (from wherever its
    /// weights are when a move failed).
    /// </summary>
    public long ReplaceWeights(PlacementPlan plan, Action? moved = null) => ChangingHomes(() => weights.Replace(plan, _tiers, _copies, moved));

    /// <summary>
    /// Lets grown weights go back to their host copies down to <paramref name="allowance"/> bytes (see
    /// <see cref="WeightStore.TrimGrowth"/>) between steps or at a layer boundary, as <see cref="ReplaceWeights"/> moves them.
    /// </summary>
    public long TrimGrownWeights(PlacementPlan inForce, long allowance) => ChangingHomes(() => weights.TrimGrowth(inForce, allowance));

    /// <summary>
    /// Changes the weights' homes between steps or at a layer boundary: waits for the weight copies in flight, runs
    /// <paramref name="change"/>, and loads the current layer again from its homes (from wherever its weights are when a
    /// move failed).
    /// </summary>
    private long ChangingHomes(Func<long> change)
    {
        if (_cursor is { } at && at.Batch.Value != 0)
            throw new InvalidOperationException("weights are re-placed only between steps or at a layer boundary");
        ReleaseWeights();
        try
        {
            return change();
        }
        finally
        {
            // Also when a move failed (no room on a tier): each weight is whole in its old home or its new one, and the
            // current layer is loaded again from wherever its weights are, so that the block can go on.
            if (_cursor is { } cursor)
            {
                using var scope = NewDisposeScope();
                _weightTransfers = new Transfers(_copies, _tiers);
                _current = weights.Load(cursor.Layer, _weightTransfers);
            }
        }
    }

    /// <summary>Completes every outstanding transfer of the step (also after a failure).</summary>
    public void End() => End(completed: false);

    /// <param name="completed">The step's last position computed: its last layer's copies go back to the store.</param>
    private void End(bool completed)
    {
        _cursor = null;
        _inputs?.Transfers.Complete();
        _inputs = null;
        _previousStores?.Complete();
        _previousStores = null;
        ReleaseWeights(lastLayer: completed);
    }

    /// <summary>
    /// Frees the loaded layers' weights: their copies completed first, then the buffers they write. At a step's end the
    /// last layer's copies go back to the store (<paramref name="lastLayer"/>), which may keep them as homes.
    /// </summary>
    private void ReleaseWeights(bool lastLayer = false)
    {
        _weightTransfers?.Complete();
        _weightTransfers = null;
        if (lastLayer && _current is not null) weights.Release(_current, new LayerIndex(layers.Count - 1));
        else _current?.Dispose();
        _current = null;
        _nextWeightTransfers?.Complete();
        _nextWeightTransfers = null;
        _nextWeights?.Dispose();
        _nextWeights = null;
    }

    private PositionInputs Prepare(BlockCursor at, TokenStep step) =>
        PositionInputs.Prepare(engine, _active[at.Batch.Value], layers[at.Layer.Value], step);

    /// <returns>False when a decoding layer stopped at a yield point for a budget change on its way (see <see cref="BlockSession.Run"/>).</returns>
    private bool Compute(BlockCursor at, TokenStep step, LoadedWeights w, PositionInputs inputs, Transfers stores, bool mayYield)
    {
        var batch = _active[at.Batch.Value];
        var layer = layers[at.Layer.Value];
        using var span = engine.Timeline?.DeviceSpan(Cuda.CudaTimeline.ComputeLane, $"{layer.Kind} {at.Layer.Value} {batch.Index}", Cuda.CudaRuntime.ComputeStream);
        var c = engine.Config;
        var architecture = engine.Architecture;
        var layout = batch.Layout;
        var cacheIndex = step.CacheIndex(layout);
        Tensor output;
        switch (layer.Kind)
        {
            case ScheduleLayerKind.Input:
            {
                var input = w.Input(architecture, engine.DType);
                using var ids = step.IsPrefill
                    ? layout.PadPrompts(batch.Sequences.Select(BatchGenerator.Context).ToArray(), c.PadTokenId, Device)
                    : tensor(LastTokens(batch, c.VocabSize), [layout.BatchSize, 1], dtype: ScalarType.Int64).to(Device);
                using var positions = batch.Positions(step, c.MaxPositionEmbeddings, architecture.PositionOffset, Device);
                output = architecture.Embed(input, ids, positions);
                break;
            }
            case ScheduleLayerKind.Decoder:
            {
                var dw = w.Decoder(architecture, engine.DType);
                // A layer that reads and writes nothing but its batch's device cache in place (and its own outputs) can
                // stop and run again from its start: its only write, the step's keys and values (a prefill's: the whole
                // prompt's), writes the same again. With one batch in the step nothing of the next position has been
                // prepared either.
                var home = batch.Cache[layer.DecoderLayer];
                var inPlace = step.IsPrefill
                    ? home.Tier == TierKind.Device && home.Memory is not null
                    : inputs.AttentionSite == TierKind.Device && inputs.ExpandCache is null && ReferenceEquals(inputs.WorkingCache, home.Memory);
                var yields = mayYield && _active.Count == 1 && inPlace;
                var yieldTo = yields ? engine.Changes : null;
                if (!step.IsPrefill && engine.Graphs is { } graphs && graphs.Takes(inputs, home, plan.ActivationTier(at.Layer, batch.Index)))
                {
                    // The layer as captured graphs: it stops only before it starts.
                    if (yieldTo is { Waiting: true }) return false;
                    output = graphs.Run(batch, layer.DecoderLayer, step, dw, inputs.WorkingCache!, inputs.Hidden!);
                    break;
                }
                // Yield points about every tenth of the layer's host time (one or two of its larger operations).
                Tensor attended;
                // The context is not needed past the output projection: it is freed before the MLP takes its intermediates.
                using (var context = _attention.Attend(batch, layer.DecoderLayer, step, dw.Attention, inputs, stores, yieldTo))
                {
                    if (context is null || yieldTo is { Waiting: true }) return false;
                    attended = architecture.AttentionOutput(context, inputs.Hidden!, dw.Attention);
                }
                using (attended)
                {
                    if (yieldTo is { Waiting: true }) return false;
                    using var up = architecture.FfnUp(attended, dw.Ffn);
                    if (yieldTo is { Waiting: true }) return false;
                    output = architecture.FfnDown(up, attended, dw.Ffn);
                }
                break;
            }
            default:
            {
                var head = w.Output(architecture, engine.DType);
                var hidden = inputs.Hidden!;
                var wantsPrompt = step.IsPrefill &&
                    batch.Sequences.Any(s => s.Request.Echo && s.Request.Logprobs is not null && s.PromptLogprobs is null);
                using var last = wantsPrompt || !step.IsPrefill ? hidden.alias() : hidden.narrow(1, layout.PaddedLength - 1, 1);
                using var logits = architecture.Logits(last, head);
                if (wantsPrompt) PromptLogprobs.Fill(logits, batch.Sequences, layout);
                using var lastLogits = logits.select(1, logits.size(1) - 1);
                var tokens = TokenChooser.Launch(lastLogits, batch.Sequences, decode,
                    DeferTokens && Device.type == TorchSharp.DeviceType.CUDA ? () => new Cuda.CudaEventFence() : null);
                if (DeferTokens)
                {
                    batch.Tokens?.Dispose();
                    batch.Tokens = tokens;
                    return true;
                }
                using (tokens) tokens.Complete();
                return true;
            }
        }
        batch.Hidden = HiddenStateBuffer.Store(output, plan.ActivationTier(at.Layer, batch.Index), _tiers, _copies, stores,
            batch.HiddenStateName(at.Layer));
        return true;
    }

    /// <summary>
    /// Each sequence's last token, the input of a decoding step, checked against the vocabulary on the host: on a GPU an
    /// embedding index out of range ends the whole CUDA context instead of this block.
    /// </summary>
    private static long[] LastTokens(GpuBatch batch, int vocabulary)
    {
        var ids = new long[batch.Sequences.Count];
        for (var b = 0; b < ids.Length; b++)
        {
            var s = batch.Sequences[b];
            ids[b] = s.OutputIds.Count > 0 ? s.OutputIds[^1]
                : throw new InvalidOperationException($"row {b} of {batch.Index} has no token yet: a decoding step ran before the previous step's tokens were appended");
            if (ids[b] < 0 || ids[b] >= vocabulary)
                throw new InvalidOperationException($"row {b} of {batch.Index} ends with token {ids[b]}, outside the vocabulary of {vocabulary}");
        }
        return ids;
    }
}
