using ActorInfer.Model.Generation;
using ActorInfer.Model.Layers;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.CpuAttention;
using ActorInfer.Runtime.Placement;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Schedule;

/// <summary>
/// One step (the prefill or one decoding step) over a block in zig-zag order: for each layer, for each GPU batch,
/// the next layer's weights and the next batch's cache and hidden state are loaded while this batch computes, and
/// this batch's outputs are stored; the previous batch's stores are completed after this batch's compute.
/// </summary>
internal sealed class BlockStep(OffloadEngine engine, IReadOnlyList<ScheduleLayer> layers, WeightStore weights, PlacementPlan plan,
    IReadOnlyList<GpuBatch> batches, Func<IReadOnlyList<int>, string> decode)
{
    private readonly TierSet _tiers = engine.Tiers;
    private readonly ICopyEngine _copies = engine.Copies;
    private Device Device => _tiers.Device.Device;

    /// <summary>What a (layer, batch) computes from: its transfers, hidden state on the device, working cache.</summary>
    private sealed record Inputs(Transfers Transfers, Tensor? Hidden, LayerKv? WorkingCache, TierKind AttentionSite);

    // The state of the step in progress: where the cursor is, and what has been loaded for it and the next one.
    private IReadOnlyList<GpuBatch> _active = [];
    private TokenStep _step;
    private BlockCursor? _cursor;
    private Transfers? _weightTransfers;
    private LoadedWeights? _current;
    private Transfers? _nextWeightTransfers;
    private LoadedWeights? _nextWeights;
    private Inputs? _inputs;
    private Transfers? _previousStores;
    // The CPU attention still in flight (the last position's, when its batch's output is not needed yet), and the
    // float32 scratch of the kernel, kept for the block.
    private PendingCpuAttention? _attention;
    private TensorLease? _attentionScratch;

    /// <summary>The (schedule layer, position among the step's batches) that <see cref="RunCurrent"/> computes next; null when the step is done.</summary>
    public BlockCursor? Current => _cursor;

    /// <summary>The batches of the step in progress, in their zig-zag order.</summary>
    public IReadOnlyList<GpuBatch> Active => _active;

    public TokenStep Step => _step;

    /// <summary>Whether a (layer, batch)'s attention is still running on the CPU worker between positions.</summary>
    public bool CpuAttentionInFlight => _attention is not null;

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
        using var scope = NewDisposeScope();
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
    /// Each position has its own dispose scope, so a driver may run positions from separate messages.
    /// </summary>
    public void RunCurrent()
    {
        if (_cursor is not { } cursor) throw new InvalidOperationException("no step is in progress");
        using var scope = NewDisposeScope();
        var step = _step;
        var next = cursor.Next();
        // The last position's CPU attention, if still in flight: the rest of its layer is issued after this
        // position's GPU work, so that the worker computes it while the device computes this one.
        var earlier = _attention;
        _attention = null;
        try
        {
            Inputs? nextInputs = null;
            // The next layer's weights start loading early in this layer, so that their copy overlaps the compute of
            // the layer's batches: at its second position (its first when it has one batch), once the attention left in
            // flight from the previous layer has given back that layer's weights; two layers are held at most.
            var loadAt = Math.Min(1, cursor.BatchCount - 1);
            if (cursor.Batch.Value == loadAt && cursor.Layer.Value + 1 < layers.Count)
            {
                _nextWeightTransfers = new Transfers(_copies, _tiers);
                _nextWeights = weights.Load(new LayerIndex(cursor.Layer.Value + 1), _nextWeightTransfers);
            }
            if (next is { } n)
            {
                // With one batch, the next position reads this compute's output: load it after. Likewise when it reads
                // the output of the attention still in flight.
                if (n.Batch != cursor.Batch && !ReferenceEquals(earlier?.Batch, _active[n.Batch.Value])) nextInputs = Prepare(n, step);
            }
            _weightTransfers!.BeforeCompute();
            _inputs!.Transfers.BeforeCompute();
            var stores = new Transfers(_copies, _tiers);
            try
            {
                Compute(cursor, step, _current!, _inputs, stores);
                // A CPU attention started by this compute took the inputs with it.
                if (_attention is null) _inputs.Transfers.Complete();
                _inputs = null;
                if (earlier is not null) FinishCpuAttention(earlier, stores);
                // The next position reads this one's output: its CPU attention cannot stay in flight.
                if (_attention is { } started && (next is null || next.Value.Batch == cursor.Batch))
                {
                    _attention = null;
                    FinishCpuAttention(started, stores);
                }
            }
            catch
            {
                stores.Complete();
                throw;
            }
            _previousStores!.Complete();
            _previousStores = stores;
            if (next is not { } following)
            {
                _inputs = nextInputs;
                End();
                return;
            }
            if (following.Layer != cursor.Layer)
            {
                // An attention in flight finishes its layer at the next position, with this layer's weights.
                if (_attention is { } inFlight)
                    inFlight.TakeWeights(_current!, _weightTransfers);
                else
                {
                    _current!.Dispose();
                    _weightTransfers.Complete();
                }
                _current = _nextWeights!;
                _weightTransfers = _nextWeightTransfers!;
                _nextWeights = null;
                _nextWeightTransfers = null;
            }
            _inputs = nextInputs ?? Prepare(following, step);
            _cursor = following;
        }
        finally
        {
            earlier?.Dispose();
        }
    }

    /// <summary>Whether the step in progress is at the start of a layer (its first batch not yet computed).</summary>
    public bool AtLayerBoundary => _cursor is { Batch.Value: 0 };

    /// <summary>
    /// Takes GPU batches out of the step in progress at a layer boundary (they leave the block: the caller frees
    /// them). The first batch of the layer, whose inputs are already loaded, cannot be taken: to drop it, end the
    /// step. The stores still in flight from the previous layer are completed first (they may write the batches).
    /// </summary>
    public void Remove(IReadOnlyCollection<GpuBatch> leaving)
    {
        if (_cursor is not { } cursor || cursor.Batch.Value != 0)
            throw new InvalidOperationException("GPU batches leave a step only at a layer boundary");
        if (leaving.Contains(_active[0])) throw new InvalidOperationException("the first batch of the layer cannot leave the step; end the step instead");
        // An attention still in flight for a leaving batch is abandoned (the worker is waited for, its buffers freed).
        if (_attention is { } pending && leaving.Contains(pending.Batch))
        {
            _attention = null;
            pending.Dispose();
        }
        _previousStores!.Complete();
        _active = _active.Where(b => !leaving.Contains(b)).ToArray();
        _cursor = cursor with { BatchCount = _active.Count };
    }

    /// <summary>
    /// Re-places the weights for <paramref name="plan"/> between steps or at a layer boundary: waits for the weight
    /// copies in flight, moves the weights, and loads the current layer again from its new home.
    /// </summary>
    public long ReplaceWeights(PlacementPlan plan)
    {
        if (_cursor is { } at && at.Batch.Value != 0)
            throw new InvalidOperationException("weights are re-placed only between steps or at a layer boundary");
        // An attention in flight holds the previous layer's weights: its layer is finished first.
        if (_attention is { } pending)
        {
            _attention = null;
            FinishCpuAttention(pending, _previousStores!);
        }
        // Copies first, then the buffers they write.
        _nextWeightTransfers?.Complete();
        _nextWeightTransfers = null;
        _nextWeights?.Dispose();
        _nextWeights = null;
        _weightTransfers?.Complete();
        _weightTransfers = null;
        _current?.Dispose();
        _current = null;
        var moved = weights.Replace(plan, _tiers, _copies);
        if (_cursor is { } cursor)
        {
            using var scope = NewDisposeScope();
            _weightTransfers = new Transfers(_copies, _tiers);
            _current = weights.Load(cursor.Layer, _weightTransfers);
        }
        return moved;
    }

    /// <summary>Completes every outstanding transfer of the step (also after a failure).</summary>
    public void End()
    {
        _cursor = null;
        // First: the worker may still be reading buffers that the inputs and weights below hold.
        _attention?.Dispose();
        _attention = null;
        _inputs?.Transfers.Complete();
        _inputs = null;
        _previousStores?.Complete();
        _previousStores = null;
        // Copies first, then the buffers they write.
        _weightTransfers?.Complete();
        _weightTransfers = null;
        _current?.Dispose();
        _current = null;
        _nextWeightTransfers?.Complete();
        _nextWeightTransfers = null;
        _nextWeights?.Dispose();
        _nextWeights = null;
    }

    /// <summary>Ends the step in progress, if any, and frees what the block's steps share (the CPU attention scratch).</summary>
    public void Close()
    {
        End();
        _attentionScratch?.Dispose();
        _attentionScratch = null;
    }

    private Inputs Prepare(BlockCursor at, TokenStep step)
    {
        var transfers = new Transfers(_copies, _tiers);
        var batch = _active[at.Batch.Value];
        var layer = layers[at.Layer.Value];
        Tensor? hidden = null;
        if (layer.Kind != ScheduleLayerKind.Input)
        {
            hidden = batch.Hidden!.Load(transfers, $"the hidden state of {batch.Index}");
            batch.Hidden = null;
        }
        if (layer.Kind != ScheduleLayerKind.Decoder || step.IsPrefill)
            return new Inputs(transfers, hidden, null, TierKind.Device);
        var home = batch.Cache[layer.DecoderLayer];
        var site = home.Tier != TierKind.Device && engine.Policy.CpuAttention ? TierKind.Cpu : TierKind.Device;
        if (home.Tier == site) return new Inputs(transfers, hidden, home.Memory, site);
        var working = home.LoadPrefix(_tiers.Memory(site), step.CacheIndex(batch.Layout), transfers,
            $"the cache of decoder layer {layer.DecoderLayer}, {batch.Index}");
        return new Inputs(transfers, hidden, working, site);
    }

    private void Compute(BlockCursor at, TokenStep step, LoadedWeights w, Inputs inputs, Transfers stores)
    {
        var batch = _active[at.Batch.Value];
        var layer = layers[at.Layer.Value];
        using var span = engine.Timeline?.DeviceSpan(Cuda.CudaTimeline.ComputeLane, $"{layer.Kind} {at.Layer.Value} {batch.Index}", Cuda.CudaRuntime.LegacyDefaultStream);
        var c = engine.Config;
        var layout = batch.Layout;
        var cacheIndex = step.CacheIndex(layout);
        Tensor output;
        switch (layer.Kind)
        {
            case ScheduleLayerKind.Input:
            {
                using var input = w.Input(c, engine.DType);
                using var ids = step.IsPrefill
                    ? layout.PadPrompts(batch.Sequences.Select(BatchGenerator.Context).ToArray(), c.PadTokenId, Device)
                    : tensor(batch.Sequences.Select(s => (long)s.OutputIds[^1]).ToArray(), [layout.BatchSize, 1], dtype: ScalarType.Int64).to(Device);
                using var positions = step.IsPrefill ? layout.PrefillPositions(Device) : layout.DecodePositions(cacheIndex, c.MaxPositionEmbeddings, Device);
                output = OptMath.Embed(input, ids, positions);
                break;
            }
            case ScheduleLayerKind.Decoder when !step.IsPrefill && inputs.AttentionSite == TierKind.Cpu:
                // The rest of the layer is computed when this attention is joined (FinishCpuAttention).
                StartCpuAttention(at, step, w, inputs, stores);
                return;
            case ScheduleLayerKind.Decoder:
            {
                using var dw = w.Decoder(c, engine.DType);
                using var context = Attention(batch, layer.DecoderLayer, step, dw.Attention, inputs, stores);
                using var attended = OptMath.AttentionOutput(context, inputs.Hidden!, dw.Attention, c);
                output = OptMath.Ffn(attended, dw.Ffn, c);
                break;
            }
            default:
            {
                using var head = w.Output(c, engine.DType);
                var hidden = inputs.Hidden!;
                var wantsPrompt = step.IsPrefill &&
                    batch.Sequences.Any(s => s.Request.Echo && s.Request.Logprobs is not null && s.PromptLogprobs is null);
                using var last = wantsPrompt || !step.IsPrefill ? hidden.alias() : hidden.narrow(1, layout.PaddedLength - 1, 1);
                using var logits = OptMath.Logits(last, head);
                if (wantsPrompt) PromptLogprobs.Fill(logits, batch.Sequences, layout);
                using var lastLogits = logits.select(1, logits.shape[1] - 1);
                TokenChooser.ChooseAndAppend(lastLogits, batch.Sequences, decode);
                return;
            }
        }
        using (output)
            batch.Hidden = HiddenHome.Store(output, plan.ActivationTier(at.Layer, batch.Index), _tiers, _copies, stores,
                $"the hidden state of {batch.Index} after {at.Layer}");
    }

    /// <summary>The attention context [B, T, hidden] on the device, with this step's keys and values stored in the cache.</summary>
    private Tensor Attention(GpuBatch batch, int decoderLayer, TokenStep step, AttentionWeights w, Inputs inputs, Transfers stores)
    {
        var c = engine.Config;
        var layout = batch.Layout;
        var home = batch.Cache[decoderLayer];
        var cacheIndex = step.CacheIndex(layout);
        var what = $"the cache of decoder layer {decoderLayer}, {batch.Index}";
        using var attentionInput = OptMath.AttentionInput(inputs.Hidden!, w, c);
        var (q, k, v) = OptMath.ProjectQkv(attentionInput, w, c);
        using (q)
        using (k)
        using (v)
        {
            if (step.IsPrefill)
            {
                var mask = batch.Mask(step, Device);
                if (home.Tier == TierKind.Device)
                {
                    home.Memory!.Write(0, k, v);
                    var (keys, values) = home.Memory.Prefix((int)q.shape[2]);
                    using (keys)
                    using (values)
                        return OptMath.Attend(q, keys, values, mask, causal: mask is null);
                }
                // FlexGen's prefill: attention on the device over this step's keys, which then go to their home.
                var context = OptMath.Attend(q, k, v, mask, causal: mask is null);
                home.Store(0, k, v, _copies, _tiers, stores, what);
                return context;
            }
            // Decoding with the attention on the device (CPU attention goes through StartCpuAttention).
            var cache = inputs.WorkingCache!;
            Tensor result;
            cache.Write(cacheIndex, k, v);
            var (cachedKeys, cachedValues) = cache.Prefix(cacheIndex + 1);
            using (cachedKeys)
            using (cachedValues)
                result = OptMath.Attend(q, cachedKeys, cachedValues, batch.Mask(step, Device));
            if (!ReferenceEquals(cache, home.Memory)) home.Store(cacheIndex, k, v, _copies, _tiers, stores, what);
            return result;
        }
    }

    /// <summary>
    /// FlexGen's CPU delegation, decoding: the projections run on the device, q, k, v go to the CPU, where the worker
    /// writes the new entry into the cache and attends over it while the host goes on.
    /// </summary>
    private void StartCpuAttention(BlockCursor at, TokenStep step, LoadedWeights w, Inputs inputs, Transfers stores)
    {
        var c = engine.Config;
        var batch = _active[at.Batch.Value];
        var decoderLayer = layers[at.Layer.Value].DecoderLayer;
        var home = batch.Cache[decoderLayer];
        var cacheIndex = step.CacheIndex(batch.Layout);
        var what = $"the cache of decoder layer {decoderLayer}, {batch.Index}";
        var cache = inputs.WorkingCache!;
        using var dw = w.Decoder(c, engine.DType);
        using var attentionInput = OptMath.AttentionInput(inputs.Hidden!, dw.Attention, c);
        var (q, k, v) = OptMath.ProjectQkv(attentionInput, dw.Attention, c);
        using (q)
        using (k)
        using (v)
        {
            if (!ReferenceEquals(cache, home.Memory)) home.Store(cacheIndex, k, v, _copies, _tiers, stores, what);
            var worker = engine.CpuAttentionWorker;
            _attentionScratch ??= AllocateScratch(worker.Kernel);
            _attention = PendingCpuAttention.Start(engine, worker, at, batch, w, inputs.Hidden!, inputs.Transfers, q, k, v, cache, cacheIndex,
                batch.Mask(step, CPU), _attentionScratch?.Tensor, what);
        }
    }

    /// <summary>The rest of a decoder layer whose attention ran on the CPU: output projection, FFN, and the hidden state stored.</summary>
    private void FinishCpuAttention(PendingCpuAttention pending, Transfers stores)
    {
        using (pending)
        {
            var c = engine.Config;
            var at = pending.At;
            var batch = pending.Batch;
            using var span = engine.Timeline?.DeviceSpan(Cuda.CudaTimeline.ComputeLane, $"{ScheduleLayerKind.Decoder} {at.Layer.Value} {batch.Index} (after CPU attention)",
                Cuda.CudaRuntime.LegacyDefaultStream);
            using var dw = pending.Weights.Decoder(c, engine.DType);
            using var context = pending.Join(stores);
            using var attended = OptMath.AttentionOutput(context, pending.Residual, dw.Attention, c);
            using var output = OptMath.Ffn(attended, dw.Ffn, c);
            batch.Hidden = HiddenHome.Store(output, plan.ActivationTier(at.Layer, batch.Index), _tiers, _copies, stores,
                $"the hidden state of {batch.Index} after {at.Layer}");
        }
    }

    /// <summary>The float32 scratch of the CPU attention kernel for the largest batch and cache of the block (null when it needs none).</summary>
    private TensorLease? AllocateScratch(CpuAttentionKernel kernel)
    {
        var c = engine.Config;
        var shape = kernel.ScratchShape((long)batches.Max(b => b.Layout.BatchSize) * c.NumAttentionHeads, batches.Max(b => b.Capacity), c.HeadDim);
        return shape is null ? null : _tiers.Cpu.Allocate(shape, ScalarType.Float32, "the CPU attention kernel's float32 scratch");
    }
}
