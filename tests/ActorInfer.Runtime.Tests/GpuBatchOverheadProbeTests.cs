using ActorInfer.Runtime.Profiling;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

/// <summary>The profiler's per-position overhead probe on the CPU: the runtime's own decoding step of a tiny model.</summary>
public class GpuBatchOverheadProbeTests
{
    [Fact]
    public void The_overhead_is_a_decoding_step_over_its_positions_and_lands_in_a_valid_profile()
    {
        using var copies = new CpuCopyEngine();
        var lines = new List<string>();
        var overhead = new GpuBatchOverheadProbe(copies, lines.Add).Measure(ScalarType.Float32);
        // A position of a 64-wide model costs microseconds to a few milliseconds on any machine, never nothing.
        Assert.InRange(overhead, 1e-7, 0.05);
        var line = Assert.Single(lines, l => l.StartsWith("GPU batch overhead:"));
        Assert.Contains($"decoding step of {(GpuBatchOverheadProbe.Layers + 2) * GpuBatchOverheadProbe.GpuBatches} positions", line);
        var profile = HardwareProfiles.T4FlexGen with { GpuBatchOverheadSeconds = overhead };
        Assert.Equal(overhead, HardwareProfileJson.Parse(HardwareProfileJson.Serialize(profile)).GpuBatchOverheadSeconds, 12);
    }
}
