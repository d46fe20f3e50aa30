using ActorInfer.Runtime.Profiling;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Tiers;

namespace ActorInfer.Runtime.Tests;

/// <summary>The profiler's CPU attention probe on the CPU, at a narrow width so that it runs in well under a second.</summary>
public class CpuAttentionProbeTests
{
    [Fact]
    public void Each_batch_size_is_timed_at_the_mean_decoding_context_and_the_points_make_a_valid_fit()
    {
        using var copies = new CpuCopyEngine();
        var lines = new List<string>();
        var probe = new CpuAttentionProbe(copies, MemoryTier.ForCpu(long.MaxValue), MemoryTier.ForDevice(long.MaxValue), lines.Add);
        var points = probe.Measure(new AttentionShape(HiddenSize: 256, Heads: 4));

        Assert.Equal([8, 16, 24, 32, 48], points.Select(p => p.GpuBatchSize));
        foreach (var point in points)
        {
            // 4·b·c̄·h with c̄ = 512 + 32/2 = 528, the context the cost model's decoding terms use.
            Assert.Equal(4.0 * point.GpuBatchSize * 528 * 256, point.Flops);
            Assert.True(point.Seconds > 0 && double.IsFinite(point.FlopsPerSecond));
        }
        Assert.Equal(points.Count, lines.Count(l => l.Contains("CPU attention, batch")));

        var (rate, fit) = CpuAttentionFit.FromRates(points.Select(p => (p.GpuBatchSize, p.FlopsPerSecond)).ToArray());
        Assert.True(rate > 0);
        Assert.InRange(fit.Factor(8, 256), 0.1, 1);
    }

    /// <summary>Over a compressed cache the probe times the same calls, attended as the runtime attends them, and frees its homes.</summary>
    [Fact]
    public void A_compressed_cache_is_timed_as_the_runtime_attends_it()
    {
        using var copies = new CpuCopyEngine();
        var lines = new List<string>();
        var host = MemoryTier.ForCpu(long.MaxValue);
        var probe = new CpuAttentionProbe(copies, host, MemoryTier.ForDevice(long.MaxValue), lines.Add);
        var points = probe.Measure(new AttentionShape(HiddenSize: 256, Heads: 4), compressed: true);

        Assert.Equal([8, 16, 24, 32, 48], points.Select(p => p.GpuBatchSize));
        Assert.All(points, p => Assert.True(p.Seconds > 0 && double.IsFinite(p.FlopsPerSecond)));
        // Heads of 64 in 256: from the codes wherever the CPU has AVX-512, else expanded first.
        var how = Model.Layers.InvariantAttention.AttendsCodes(64, 256) ? "from its codes" : "expanded";
        Assert.Equal(points.Count, lines.Count(l => l.Contains($"CPU attention over a compressed cache, {how}, batch")));
        Assert.Equal(0, host.BytesHeld);
    }
}
