using System.Diagnostics;
using ActorInfer.Model.Layers;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Profiling;

/// <summary>
/// Times CPU attention as the runtime runs it for one (decoder layer, GPU batch) of a decoding step
/// (<c>LayerAttention.CpuAttention</c>): the new token's q, k, v leave the device for fresh CPU leases (pinned with CUDA),
/// the new key and value are written into a preallocated cache of capacity prompt + generation, attention runs over
/// the prefix view from each sequence's first position (<see cref="InvariantAttention"/>), and the context goes back to a
/// fresh device lease. The host waits for
/// both copies, since it reads the one and the device's next kernel reads the other.
/// </summary>
internal sealed class CpuAttentionProbe(ICopyEngine copies, MemoryTier host, MemoryTier device, Action<string> log)
{
    /// <summary>The GPU batch sizes timed: the planner's grid around FlexGen's OPT-30B batches.</summary>
    public static IReadOnlyList<int> BatchSizes { get; } = [8, 16, 24, 32, 48];

    /// <summary>FlexGen's benchmark workload: the cache holds 512 + 32 tokens and is timed at the mean decoding context.</summary>
    public static Workload Workload { get; } = new(512, 32);

    private const int Repetitions = 3;

    /// <summary>One timed point per batch size: the median seconds of a call and its attention FLOPs (4·b·context·hidden).</summary>
    /// <param name="compressed">
    /// Over a 4-bit compressed cache (codes and ranges, token-major as the runtime keeps it on the CPU), attended as the
    /// runtime attends it: from its codes where the kernel takes them, else expanded into a working cache first.
    /// </param>
    public IReadOnlyList<CpuAttentionPoint> Measure(AttentionShape shape, bool compressed = false)
    {
        var (hiddenSize, heads) = (shape.HiddenSize, shape.Heads);
        var headDim = shape.HeadDim;
        // The step at the mean context: the cache holds s + n/2 - 1 tokens and the new one is written at that index.
        var cacheIndex = (int)Workload.MeanDecodeContext - 1;
        var points = new List<CpuAttentionPoint>();
        foreach (var batch in BatchSizes)
        {
            using var scope = NewDisposeScope();
            using var keys = host.Allocate([batch, heads, Workload.TotalLength, headDim], ScalarType.Float16, "profile cache keys");
            using var values = host.Allocate([batch, heads, Workload.TotalLength, headDim], ScalarType.Float16, "profile cache values");
            var cache = new LayerKv(keys.Tensor, values.Tensor);
            var (filledKeys, filledValues) = cache.Prefix(cacheIndex);
            filledKeys.normal_();
            filledValues.normal_();
            using var q = randn([batch, heads, 1, headDim], dtype: ScalarType.Float16, device: device.Device);
            using var k = randn([batch, heads, 1, headDim], dtype: ScalarType.Float16, device: device.Device);
            using var v = randn([batch, heads, 1, headDim], dtype: ScalarType.Float16, device: device.Device);
            var starts = Starts(batch);
            CacheCodes? codes = null;
            var homes = new List<TensorLease>();
            if (compressed)
            {
                // The filled prefix compressed into codes of a whole cache's capacity, as a CPU home holds them.
                var (keyCodes, keyRanges) = CacheCompression.Compress(filledKeys);
                var (valueCodes, valueRanges) = CacheCompression.Compress(filledValues);
                Tensor Home(Tensor part)
                {
                    var home = host.Allocate([Workload.TotalLength, .. part.shape[1..]], part.dtype, "profile compressed cache");
                    homes.Add(home);
                    return home.Tensor.narrow(0, 0, cacheIndex).copy_(part);
                }
                codes = new CacheCodes(Home(keyCodes), Home(keyRanges), Home(valueCodes), Home(valueRanges));
            }
            double seconds;
            try
            {
                seconds = Median(() => Call(q, k, v, cache, codes, cacheIndex, starts));
            }
            finally
            {
                foreach (var home in homes) home.Dispose();
            }
            var point = new CpuAttentionPoint(batch, seconds, 4.0 * batch * (cacheIndex + 1) * hiddenSize);
            var how = codes is null ? "" : InvariantAttention.AttendsCodes(headDim, hiddenSize) ? " over a compressed cache, from its codes" : " over a compressed cache, expanded";
            log($"CPU attention{how}, batch {batch}, hidden {hiddenSize}, context {cacheIndex + 1}: {seconds * 1e3:F2} ms per call, {point.FlopsPerSecond / 1e9:F2} GFLOP/s");
            points.Add(point);
        }
        return points;
    }

    /// <summary>A left-padded batch's first attended positions: every other sequence has one pad token in front.</summary>
    private static int[] Starts(int batch) => [.. Enumerable.Range(0, batch).Select(b => b % 2)];

    private void Call(Tensor q, Tensor k, Tensor v, LayerKv cache, CacheCodes? codes, int cacheIndex, int[] starts)
    {
        using var scope = NewDisposeScope();
        var after = copies.AfterCompute();
        var leases = new List<TensorLease>();
        try
        {
            Tensor ToCpu(Tensor t)
            {
                var lease = host.Allocate(t.Dims(), t.dtype, "profile q/k/v");
                leases.Add(lease);
                copies.CopyAfter(after, lease.Tensor, t, CopyDirection.Store).Wait();
                return lease.Tensor;
            }
            var (qc, kc, vc) = (ToCpu(q), ToCpu(k), ToCpu(v));
            using (var context = Attend(qc, kc, vc))
            {
                var back = device.Allocate(context.Dims(), context.dtype, "profile context");
                leases.Add(back);
                copies.CopyAfter(copies.AfterCompute(), back.Tensor, context, CopyDirection.Load).Wait();
            }
        }
        finally
        {
            foreach (var lease in leases) lease.Dispose();
        }

        // As the runtime attends: a compressed cache from its codes where the kernel takes them (the test CompressedKvHome
        // makes), else expanded into the working cache first.
        Tensor Attend(Tensor qc, Tensor kc, Tensor vc)
        {
            var headDim = (int)qc.size(3);
            var fromCodes = codes is not null && InvariantAttention.AttendsCodes(headDim, kc.size(1) * headDim);
            if (codes is not null && !fromCodes)
            {
                CacheCompression.DecompressInto(codes.KeyCodes, codes.KeyRanges, cache.Keys.narrow(2, 0, cacheIndex));
                CacheCompression.DecompressInto(codes.ValueCodes, codes.ValueRanges, cache.Values.narrow(2, 0, cacheIndex));
            }
            return LayerAttention.OnHost(qc, kc, vc, cache, fromCodes ? codes : null, cacheIndex, starts);
        }
    }

    private static double Median(Action run)
    {
        run();
        var samples = new double[Repetitions];
        for (var i = 0; i < Repetitions; i++)
        {
            var watch = Stopwatch.StartNew();
            run();
            samples[i] = watch.Elapsed.TotalSeconds;
        }
        return samples.Order().ElementAt(Repetitions / 2);
    }
}

/// <summary>The attention width of a model: its hidden size split over its heads.</summary>
public sealed record AttentionShape(int HiddenSize, int Heads)
{
    /// <summary>OPT-6.7B's attention, at which CPU attention was timed before the width could be chosen.</summary>
    public static AttentionShape Default { get; } = new(4096, 32);

    public int HeadDim => HiddenSize / Heads;
}

/// <summary>One timed CPU attention call: its GPU batch size, seconds and FLOPs.</summary>
internal sealed record CpuAttentionPoint(int GpuBatchSize, double Seconds, double Flops)
{
    public double FlopsPerSecond => Flops / Seconds;
}
