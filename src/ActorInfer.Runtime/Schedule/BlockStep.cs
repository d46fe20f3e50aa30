using ActorInfer.Model.Generation;
using ActorInfer.Model.Layers;
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
internal sealed class BlockStep(OffloadEngine engine, IReadOnlyList<ScheduleLayer> layers, WeightStore weights, PlacementPlan plan,
    IReadOnlyList<GpuBatch> batches, Func<IReadOnlyList<int>, string> decode)
{
    private readonly TierSet _tiers = engine.Tiers;
    private readonly ICopyEngine _copies = engine.Copies;
    private Device Device => _tiers.Device.Device;

    /// <summary>What a (layer, batch) computes from: its transfers, hidden state on the device, working cache.</summary>
    private sealed record Inputs(Transfers Transfers, Tensor? Hidden, LayerKv? WorkingCache, TierKind AttentionSite);

    public void Run(TokenStep step)
    {
        using var scope = NewDisposeScope();
        var cursor = BlockCursor.First(layers.Count, batches.Count);
        var weightTransfers = new Transfers(_copies, _tiers);
        var current = weights.Load(cursor.Layer, weightTransfers);
        Transfers? nextWeightTransfers = null;
        LoadedWeights? nextWeights = null;
        var inputs = Prepare(cursor, step);
        var previousStores = new Transfers(_copies, _tiers);
        try
        {
            while (true)
            {
                var next = cursor.Next();
                Inputs? nextInputs = null;
                if (next is { } n)
                {
                    if (n.Layer != cursor.Layer)
                    {
                        nextWeightTransfers = new Transfers(_copies, _tiers);
                        nextWeights = weights.Load(n.Layer, nextWeightTransfers);
                    }
                    // With one batch, the next position reads this compute's output: load it after.
                    if (n.Batch != cursor.Batch) nextInputs = Prepare(n, step);
                }
                weightTransfers.BeforeCompute();
                inputs.Transfers.BeforeCompute();
                var stores = new Transfers(_copies, _tiers);
                Compute(cursor, step, current, inputs, stores);
                inputs.Transfers.Complete();
                previousStores.Complete();
                previousStores = stores;
                if (next is not { } following) break;
                if (following.Layer != cursor.Layer)
                {
                    current.Dispose();
                    weightTransfers.Complete();
                    current = nextWeights!;
                    weightTransfers = nextWeightTransfers!;
                    nextWeights = null;
                    nextWeightTransfers = null;
                }
                inputs = nextInputs ?? Prepare(following, step);
                cursor = following;
            }
        }
        finally
        {
            inputs.Transfers.Complete();
            previousStores.Complete();
            current.Dispose();
            weightTransfers.Complete();
            nextWeights?.Dispose();
            nextWeightTransfers?.Complete();
        }
    }

    private Inputs Prepare(BlockCursor at, TokenStep step)
    {
        var transfers = new Transfers(_copies, _tiers);
        var batch = batches[at.Batch.Value];
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
        var batch = batches[at.Batch.Value];
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
                using var positions = step.IsPrefill ? layout.PrefillPositions(Device) : layout.DecodePositions(cacheIndex, Device);
                output = OptMath.Embed(input, ids, positions);
                break;
            }
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
            var cache = inputs.WorkingCache!;
            Tensor result;
            if (inputs.AttentionSite == TierKind.Device)
            {
                cache.Write(cacheIndex, k, v);
                var (keys, values) = cache.Prefix(cacheIndex + 1);
                using (keys)
                using (values)
                    result = OptMath.Attend(q, keys, values, batch.Mask(step, Device));
            }
            else
                result = CpuAttention(q, k, v, cache, cacheIndex, batch.Mask(step, CPU), what);
            if (!ReferenceEquals(cache, home.Memory)) home.Store(cacheIndex, k, v, _copies, _tiers, stores, what);
            return result;
        }
    }

    /// <summary>FlexGen's CPU delegation: q, k, v go to the CPU, attention runs there over the CPU cache, the context comes back.</summary>
    private Tensor CpuAttention(Tensor q, Tensor k, Tensor v, LayerKv cache, int cacheIndex, Tensor? mask, string what)
    {
        using var work = new Transfers(_copies, _tiers);
        var after = _copies.AfterCompute();
        Tensor ToCpu(Tensor t, string name)
        {
            var lease = _tiers.Cpu.Allocate(t.shape, t.dtype, $"{name} for CPU attention over {what}");
            work.Keep(lease);
            work.Add(_copies.CopyAfter(after, lease.Tensor, t, CopyDirection.Store));
            return lease.Tensor;
        }
        var (qc, kc, vc) = (ToCpu(q, "queries"), ToCpu(k, "keys"), ToCpu(v, "values"));
        work.BeforeCompute();
        using var span = engine.Timeline?.HostSpan("host (CPU attention)", what);
        cache.Write(cacheIndex, kc, vc);
        var (keys, values) = cache.Prefix(cacheIndex + 1);
        using (keys)
        using (values)
        using (var context = OptMath.Attend(qc, keys, values, mask))
        {
            var back = _tiers.Device.Allocate(context.shape, context.dtype, $"context of CPU attention over {what}");
            work.Keep(back);
            _copies.BeforeCompute(_copies.CopyAfter(_copies.AfterCompute(), back.Tensor, context, CopyDirection.Load));
            // The lease goes with the transfers; the caller gets its own handle on the same storage.
            return back.Tensor.alias();
        }
    }
}
