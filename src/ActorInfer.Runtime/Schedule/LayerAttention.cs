using ActorInfer.Model.Layers;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Schedule;

/// <summary>
/// A decoder layer's attention for one GPU batch, at the site its <see cref="PositionInputs"/> were prepared for: on the
/// device over the device cache or a working copy, or FlexGen's CPU delegation over a CPU cache. This step's keys and
/// values go to the cache's home.
/// </summary>
internal sealed class LayerAttention(OffloadRuntime engine)
{
    private readonly TierSet _tiers = engine.Tiers;
    private readonly ICopyEngine _copies = engine.Copies;
    private Device Device => _tiers.Device.Device;

    /// <summary>The attention context [B, T, hidden] on the device, with this step's keys and values stored in the cache.</summary>
    /// <param name="yieldTo">
    /// Given: null is returned when a change is waiting at one of its yield points (after the projection, after this
    /// step's keys and values are written: writing them again writes the same).
    /// </param>
    public Tensor? Attend(GpuBatch batch, int decoderLayer, TokenStep step, AttentionWeights w, PositionInputs inputs, Transfers stores,
        ChangeSignal? yieldTo = null)
    {
        var architecture = engine.Architecture;
        var layout = batch.Layout;
        var home = batch.Cache[decoderLayer];
        var cacheIndex = step.CacheIndex(layout);
        // Rotary embeddings turn queries and keys by their positions (the same angles for every layer of the step); learned
        // positions were added at the embedding.
        var angles = batch.Angles(step, architecture, engine.Config.MaxPositionEmbeddings, engine.DType, Device);
        using var attentionInput = architecture.AttentionInput(inputs.Hidden!, w);
        using var qkv = architecture.Project(attentionInput, w, angles);
        if (yieldTo is { Waiting: true }) return null;
        var (q, k, v) = (qkv.Queries, qkv.Keys, qkv.Values);
        var invariant = engine.BatchInvariant;
        if (step.IsPrefill)
        {
            // Batch-invariant: each prompt attended over itself alone (no mask), sequences of equal padding together.
            var mask = invariant ? null : batch.Mask(step, Device);
            Tensor Prompts(Tensor keys, Tensor values) => invariant
                ? AttentionMath.AttendPrompts(q, keys, values, batch.Starts)
                : AttentionMath.Attend(q, keys, values, mask, causal: mask is null);
            if (home.Tier == TierKind.Device && home.Memory is { } deviceCache)
            {
                deviceCache.Write(0, k, v);
                var (keys, values) = deviceCache.Prefix((int)q.size(2));
                using (keys)
                using (values)
                    return Prompts(keys, values);
            }
            // FlexGen's prefill: attention on the device over this step's keys, which then go to their home (the copy
            // engines copy contiguous tensors; the projection's heads are views).
            var context = Prompts(k, v);
            using var promptKeys = k.contiguous();
            using var promptValues = v.contiguous();
            home.Store(0, promptKeys, promptValues, _copies, _tiers, stores, batch.CacheName(decoderLayer));
            return context;
        }
        var codes = inputs.WorkingCodes;
        var cache = inputs.WorkingCache;
        inputs.ExpandCache?.Invoke();
        Tensor? onDevice = null;
        if (inputs.AttentionSite == TierKind.Device)
        {
            if (cache is null) throw new InvalidOperationException($"no working cache on the device for {batch.CacheName(decoderLayer)}");
            // A plain cache of its own gets the step's keys and values inside the attention: our fused kernel writes them as
            // it attends (no copy kernels first), other paths copy them there first. Elsewhere they are written here.
            var written = ReferenceEquals(cache, home.Memory) && !invariant && cache.GetType() == typeof(LayerKv)
                && k.size(2) == 1 && cacheIndex < cache.Capacity;
            if (!written) cache.Write(cacheIndex, k, v);
            // Writing the same keys and values again, once the layer runs again, writes the same.
            if (yieldTo is { Waiting: true }) return null;
            // With a fused decoding kernel, a cache that stays on the device is attended over a length rounded up (its
            // unwritten entries are zeros, masked): cuDNN then plans once per 64 tokens, not every step, and the
            // memory-efficient kernel's mask keeps the alignment it asks for. Batched products plan nothing; on CUDA they
            // read up to a multiple of 8 entries (AlignedLength), as our fused kernel does (it falls back to the products).
            var inHome = ReferenceEquals(cache, home.Memory) && !invariant;
            var attended = !inHome ? cacheIndex + 1
                : engine.DecodeAttention is DecodeAttention.Products or DecodeAttention.Fused ? AlignedLength(cacheIndex + 1, (int)cache.Capacity, Device.type)
                : RoundedLength(cacheIndex + 1, (int)cache.Capacity);
            var (keys, values) = cache.Prefix(attended);
            using (keys)
            using (values)
            {
                // Batched products on CUDA mask by the mask's negation: one per step, not one per layer.
                var products = Device.type == TorchSharp.DeviceType.CUDA && engine.DecodeAttention == DecodeAttention.Products;
                onDevice = invariant
                    ? InvariantAttention.Decode(q, keys, values, batch.Starts, Device.type == TorchSharp.DeviceType.CUDA ? batch.StartsOn(Device) : null)
                    : AttentionMath.Attend(q, keys, values, batch.Mask(step, Device, attended), decode: engine.DecodeAttention,
                        excluded: products ? batch.Excluded(step, Device, attended) : null, newKeys: written ? k : null,
                        newValues: written ? v : null, newIndex: cacheIndex);
            }
            if (ReferenceEquals(cache, home.Memory)) return onDevice;
        }
        // The copy engines copy contiguous tensors (or rows at one pitch): a decoding step's keys and values are views of
        // its one projection.
        using var storedKeys = k.contiguous();
        using var storedValues = v.contiguous();
        var result = onDevice ?? CpuAttention(q, storedKeys, storedValues, cache, codes, cacheIndex, batch.Starts, batch.CacheName(decoderLayer));
        // A cache attended in place has the step's entries already; a working copy or codes do not keep them.
        if (cache is null || !ReferenceEquals(cache, home.Memory))
            home.Store(cacheIndex, storedKeys, storedValues, _copies, _tiers, stores, batch.CacheName(decoderLayer));
        return result;
    }

    /// <summary>Attended cache length for <paramref name="length"/> filled entries: up to a multiple of 64, within the capacity.</summary>
    internal static int RoundedLength(int length, int capacity) => Math.Min(capacity, (length + 63) / 64 * 64);

    /// <summary>
    /// The length batched products attend over a zeroed device cache on CUDA: <paramref name="length"/> filled entries up to a
    /// multiple of 8 (16 bytes of float16), within the capacity, the rest masked. At any other length the products' rows are
    /// misaligned and the BLAS library falls back to matrix-vector kernels: on an H100 an OPT-6.7B layer's two products at
    /// batch 32 took 134 to 149 us at such lengths against 100 us at aligned ones (docs/perf/h100-kernels/). Elsewhere (the
    /// CPU, a working copy that is not zeroed) the filled length.
    /// </summary>
    internal static int AlignedLength(int length, int capacity, TorchSharp.DeviceType device) =>
        device == TorchSharp.DeviceType.CUDA ? Math.Min(capacity, (length + 7) / 8 * 8) : length;

    /// <summary>
    /// FlexGen's CPU delegation: q, k, v go to the CPU, attention runs there over the CPU cache (by <see cref="InvariantAttention"/>),
    /// the context comes back. A compressed cache is attended from its codes (<paramref name="codes"/>) with the step's key and
    /// value after them, or else over its expanded working copy.
    /// </summary>
    /// <param name="starts">Each sequence's first attended index (its padding).</param>
    private Tensor CpuAttention(Tensor q, Tensor k, Tensor v, LayerKv? cache, CacheCodes? codes, int cacheIndex, IReadOnlyList<int> starts, string what)
    {
        using var work = new Transfers(_copies, _tiers);
        var after = _copies.AfterCompute();
        Tensor ToCpu(Tensor t, string name)
        {
            var lease = _tiers.Cpu.Allocate(t.Dims(), t.dtype, $"{name} for CPU attention over {what}");
            work.Keep(lease);
            work.Add(_copies.CopyAfter(after, lease.Tensor, t, CopyDirection.Store));
            return lease.Tensor;
        }
        var (qc, kc, vc) = (ToCpu(q, "queries"), ToCpu(k, "keys"), ToCpu(v, "values"));
        // The host reads them next: wait for the copies here, not only on the device's stream.
        work.BeforeHostCompute();
        using var span = engine.Timeline?.HostSpan("host (CPU attention)", what);
        // One written order of operations, 4 to 5 times faster than libtorch's half-precision attention on the CPU, and the
        // same bits as the device's batch-invariant kernel.
        using (var context = OnHost(qc, kc, vc, cache, codes, cacheIndex, starts))
        {
            var back = _tiers.Device.Allocate(context.Dims(), context.dtype, $"context of CPU attention over {what}");
            work.Keep(back);
            _copies.BeforeCompute(_copies.CopyAfter(_copies.AfterCompute(), back.Tensor, context, CopyDirection.Load));
            // The lease goes with the transfers; the caller gets its own handle on the same storage.
            return back.Tensor.alias();
        }
    }

    /// <summary>
    /// The attention of <see cref="CpuAttention"/> on the host, q, k and v already there: from a compressed cache's codes
    /// with the step's key and value after them, or over the working cache with them written at <paramref name="cacheIndex"/>.
    /// The profile's probe times it too.
    /// </summary>
    internal static Tensor OnHost(Tensor qc, Tensor kc, Tensor vc, LayerKv? cache, CacheCodes? codes, int cacheIndex, IReadOnlyList<int> starts)
    {
        if (codes is not null) return InvariantAttention.DecodeCodes(qc, codes, kc, vc, starts);
        cache!.Write(cacheIndex, kc, vc);
        var (keys, values) = cache.Prefix(cacheIndex + 1);
        using (keys)
        using (values)
            return InvariantAttention.Decode(qc, keys, values, starts);
    }
}
