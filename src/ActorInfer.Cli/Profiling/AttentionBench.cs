using System.Diagnostics;
using ActorInfer.Model.Layers;
using ActorInfer.Runtime.CpuAttention;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Cli.Profiling;

/// <summary>The decode-attention shape of one GPU batch: its cache is [batch, heads, capacity, head_dim], attended up to <see cref="Context"/>.</summary>
public sealed record AttentionShape(int Batch, int Heads, int HeadDim, int Capacity, int Context)
{
    /// <summary>Keys and values read: the cache prefix, in float16.</summary>
    public double CacheBytes(long elementSize) => 2.0 * Batch * Heads * Context * HeadDim * elementSize;

    /// <summary>Multiply-adds of the scores and the weighted values, counted as two FLOPs each (the cost model's count).</summary>
    public double Flops => 4.0 * Batch * Heads * Context * HeadDim;

    public override string ToString() => $"batch {Batch}, {Heads} heads x {HeadDim}, context {Context} of {Capacity}";
}

/// <summary>One kernel's timing and error on one shape.</summary>
public sealed record AttentionTiming(CpuAttentionKernel Kernel, int Threads, double Seconds, double BytesPerSecond, double FlopsPerSecond, double MaxUlps)
{
    /// <summary>Within one float16 unit in the last place of the float64 result everywhere (what rounding the exact result gives, with room for the order of sums).</summary>
    public bool Exact => MaxUlps <= 1.0;
}

/// <summary>
/// Times CPU decode attention as the runtime runs it: the cache preallocated in the CPU tier (pinned when CUDA is
/// present) as [B, heads, capacity, head_dim], the new key and value written in place, attention over the strided
/// prefix into a preallocated output. Errors are measured against the same attention in float64.
/// </summary>
public sealed class AttentionBench : IDisposable
{
    private readonly MemoryTier _tier = MemoryTier.ForCpu(long.MaxValue);
    private readonly TensorLease _keys, _values, _q, _k, _v, _output;
    private readonly Tensor _reference;
    private readonly Tensor? _mask;

    public AttentionBench(AttentionShape shape, ScalarType dtype, bool masked, int seed = 1)
    {
        Shape = shape;
        DType = dtype;
        using var scope = NewDisposeScope();
        var generator = new TorchSharp.torch.Generator((ulong)seed);
        long[] cacheShape = [shape.Batch, shape.Heads, shape.Capacity, shape.HeadDim];
        long[] tokenShape = [shape.Batch, shape.Heads, 1, shape.HeadDim];
        _keys = _tier.Allocate(cacheShape, dtype, "bench keys");
        _values = _tier.Allocate(cacheShape, dtype, "bench values");
        _q = _tier.Allocate(tokenShape, dtype, "bench queries");
        _k = _tier.Allocate(tokenShape, dtype, "bench new keys");
        _v = _tier.Allocate(tokenShape, dtype, "bench new values");
        _output = _tier.Allocate([shape.Batch, 1, shape.Heads * shape.HeadDim], dtype, "bench context");
        // Keys scaled so that scores spread over a few units, as trained models' do; values of unit size.
        _keys.Tensor.copy_(randn(cacheShape, generator: generator) * 2.0);
        _values.Tensor.copy_(randn(cacheShape, generator: generator));
        _q.Tensor.copy_(randn(tokenShape, generator: generator));
        _k.Tensor.copy_(randn(tokenShape, generator: generator) * 2.0);
        _v.Tensor.copy_(randn(tokenShape, generator: generator));
        if (masked)
        {
            // Left padding of up to a quarter of the context, different per sequence.
            var padding = arange(shape.Batch, dtype: ScalarType.Int64) * (shape.Context / 4) / Math.Max(1, shape.Batch - 1);
            var positions = arange(shape.Context, dtype: ScalarType.Int64).view(1, 1, 1, -1);
            _mask = positions.ge(padding.view(-1, 1, 1, 1)).DetachFromDisposeScope();
        }
        WriteNewEntry();
        var (keys, values) = Prefix();
        using (keys)
        using (values)
        {
            var q64 = _q.Tensor.to_type(ScalarType.Float64);
            var k64 = keys.to_type(ScalarType.Float64);
            var v64 = values.to_type(ScalarType.Float64);
            var scores = q64.matmul(k64.transpose(2, 3)) / Math.Sqrt(shape.HeadDim);
            if (_mask is not null) scores = scores.masked_fill(_mask.logical_not(), double.NegativeInfinity);
            _reference = scores.softmax(-1).matmul(v64).transpose(1, 2).reshape(shape.Batch, 1, -1).DetachFromDisposeScope();
        }
    }

    public AttentionShape Shape { get; }
    public ScalarType DType { get; }

    private void WriteNewEntry()
    {
        using var cache = new LayerKv(_keys.Tensor.alias(), _values.Tensor.alias());
        cache.Write(Shape.Context - 1, _k.Tensor, _v.Tensor);
    }

    private (Tensor Keys, Tensor Values) Prefix()
    {
        using var cache = new LayerKv(_keys.Tensor.alias(), _values.Tensor.alias());
        return cache.Prefix(Shape.Context);
    }

    /// <summary>One call as the runtime makes it: the new entry written, then attention over the prefix.</summary>
    public void RunOnce(CpuAttentionKernel kernel, Tensor? scratch, TorchThreadPool? pool)
    {
        using var scope = NewDisposeScope();
        WriteNewEntry();
        var (keys, values) = Prefix();
        kernel.Attend(_q.Tensor, keys, values, _mask, _output.Tensor, scratch, pool);
    }

    /// <summary>
    /// Median of <paramref name="repeats"/> timed calls after two warm-up calls: with a pool of the kernel's threads,
    /// or else with <paramref name="threads"/> intra-op threads (null: the calling thread's).
    /// </summary>
    public AttentionTiming Time(CpuAttentionKernel kernel, int? threads, int repeats)
    {
        var before = get_num_threads();
        using var pool = kernel.Threads > 0 ? new TorchThreadPool(kernel.Threads, "bench-attention") : null;
        if (pool is null && threads is { } n) set_num_threads(n);
        var scratchShape = kernel.ScratchShape((long)Shape.Batch * Shape.Heads, Shape.Capacity, Shape.HeadDim);
        using var scratch = scratchShape is null ? null : _tier.Allocate(scratchShape, ScalarType.Float32, "bench scratch");
        try
        {
            RunOnce(kernel, scratch?.Tensor, pool);
            var ulps = MaxUlps();
            RunOnce(kernel, scratch?.Tensor, pool);
            var samples = new double[repeats];
            for (var i = 0; i < repeats; i++)
            {
                var watch = Stopwatch.StartNew();
                RunOnce(kernel, scratch?.Tensor, pool);
                samples[i] = watch.Elapsed.TotalSeconds;
            }
            Array.Sort(samples);
            var seconds = samples[repeats / 2];
            return new AttentionTiming(kernel, pool?.Count ?? threads ?? before, seconds, Shape.CacheBytes(_keys.Tensor.ElementSize) / seconds, Shape.Flops / seconds, ulps);
        }
        finally
        {
            set_num_threads(before);
        }
    }

    /// <summary>
    /// The largest error of the last output, in float16 units in the last place at the output's scale: the spacing
    /// of float16 numbers at each element's reference value, or at the mean magnitude of the output where that is
    /// larger (an output near zero is a sum of larger terms that cancel; no float16 kernel gets it closer than those).
    /// </summary>
    private double MaxUlps()
    {
        using var scope = NewDisposeScope();
        var output = _output.Tensor.to_type(ScalarType.Float64);
        var error = (output - _reference).abs();
        var scale = _reference.abs().mean().item<double>();
        var spacing = _reference.abs().clamp_min(Math.Max(scale, Math.Pow(2, -14))).log2().floor().sub(10).exp2();
        return (error / spacing).max().item<double>();
    }

    public void Dispose()
    {
        _reference.Dispose();
        _mask?.Dispose();
        foreach (var lease in new[] { _keys, _values, _q, _k, _v, _output }) lease.Dispose();
    }
}
