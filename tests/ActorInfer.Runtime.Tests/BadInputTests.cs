using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

public sealed class BadInputTests
{
    [Fact]
    public void WeightsOverTheDeviceBudgetAreRefusedBeforeAnyAllocation()
    {
        using var source = new RandomWeights(TestConfigs.PreLn, seed: 1);
        var tiers = TierSet.Create(deviceBytes: 100_000, Harness.Generous, diskFolder: null, 0);
        using var copies = new CpuCopyEngine();
        var policy = new Policy(1, 1, TierFractions.AllGpu, TierFractions.AllGpu, TierFractions.AllGpu);
        var e = Assert.Throws<TierBudgetExceededException>(() =>
            new OffloadRuntime(TestConfigs.PreLn, source, policy, tiers, copies, ScalarType.Float32));
        Assert.Equal(TierKind.Device, e.Tier);
        Assert.Equal(100_000, e.BytesAllowed);
        Assert.True(e.BytesNeeded > 100_000);
        Assert.Contains($"needs {e.BytesNeeded} bytes", e.Message);
        Assert.Contains("allows 100000 bytes", e.Message);
        Assert.Equal(0, tiers.Device.PeakBytes);
        Assert.Equal(0, tiers.Cpu.PeakBytes);
    }

    [Fact]
    public void ACacheOverTheCpuBudgetIsRefusedBeforeTheBlockAllocatesAnything()
    {
        using var source = new RandomWeights(TestConfigs.PreLn, seed: 1);
        var tiers = TierSet.Create(Harness.Generous, cpuBytes: 4_000, diskFolder: null, 0);
        using var copies = new CpuCopyEngine();
        var policy = new Policy(2, 2, TierFractions.AllGpu, TierFractions.AllCpu, TierFractions.AllGpu);
        using var engine = new OffloadRuntime(TestConfigs.PreLn, source, policy, tiers, copies, ScalarType.Float32);
        var held = tiers.Device.BytesHeld;
        tiers.Device.ResetPeak();
        var sequences = Harness.Sequences(TestConfigs.PreLn, 4);
        var e = Assert.Throws<TierBudgetExceededException>(() => engine.Generate(sequences, Harness.Decode));
        Assert.Equal(TierKind.Cpu, e.Tier);
        Assert.Equal(4_000, e.BytesAllowed);
        Assert.Equal(engine.Plan(sequences).Total.Cpu, e.BytesNeeded);
        Assert.Equal(held, tiers.Device.PeakBytes);
        Assert.Equal(0, tiers.Cpu.PeakBytes);
        Assert.All(sequences, s => Assert.Empty(s.OutputIds));
    }

    [Fact]
    public void ADiskPlacementWithoutADiskFolderIsRefused()
    {
        using var source = new RandomWeights(TestConfigs.PreLn, seed: 1);
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, diskFolder: null, 0);
        using var copies = new CpuCopyEngine();
        var policy = new Policy(1, 1, TierFractions.AllDisk, TierFractions.AllGpu, TierFractions.AllGpu);
        var e = Assert.Throws<TierBudgetExceededException>(() =>
            new OffloadRuntime(TestConfigs.PreLn, source, policy, tiers, copies, ScalarType.Float32));
        Assert.Equal(TierKind.Disk, e.Tier);
        Assert.Contains("no disk folder", e.Message);
    }

    [Fact]
    public void ABlockLargerThanThePolicyIsRefused()
    {
        using var source = new RandomWeights(TestConfigs.PreLn, seed: 1);
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
        using var copies = new CpuCopyEngine();
        using var engine = new OffloadRuntime(TestConfigs.PreLn, source,
            new Policy(2, 1, TierFractions.AllGpu, TierFractions.AllGpu, TierFractions.AllGpu), tiers, copies, ScalarType.Float32);
        var e = Assert.Throws<ArgumentException>(() => engine.Generate(Harness.Sequences(TestConfigs.PreLn, 3), Harness.Decode));
        Assert.Contains("at most 2 sequences", e.Message);
    }
}
