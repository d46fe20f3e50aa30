using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

/// <summary>
/// A runtime may load its weights somewhere else than its policy places them (a node whose weights do not fit its GPU
/// budget loads them into host memory): they are held there, and host copies are still decided on the policy's placement.
/// </summary>
public sealed class StartWeightsTests
{
    [Fact]
    public void Weights_load_where_asked_and_host_copies_follow_the_policy()
    {
        var config = TestConfigs.PreLn;
        using var source = new RandomWeights(config, seed: 5);
        var policy = new Policy(2, 1, TierFractions.AllGpu, TierFractions.AllGpu, TierFractions.AllGpu);
        var weightBytes = OffloadRuntime.PlanFor(config, source, policy, ScalarType.Float32, deviceIsCpu: true, 1, 1).Weights.Device;
        Assert.True(weightBytes > 0);
        foreach (var (hostBudget, keeps) in new[] { (Harness.Generous, true), (weightBytes, false) })
        {
            var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
            using var copies = new CpuCopyEngine();
            using var runtime = OffloadRuntime.Create(config, source, policy, tiers, copies, ScalarType.Float32, elastic: true, hostBudget,
                startWeights: bytes =>
                {
                    // Asked with the bytes the policy places on the device.
                    Assert.Equal(weightBytes, bytes);
                    return TierFractions.AllCpu;
                });
            Assert.Equal(TierFractions.AllCpu, runtime.Policy.Weights);
            Assert.Equal(0, tiers.Device.BytesHeld);
            Assert.Equal(weightBytes, tiers.Cpu.BytesHeld);
            // Host copies as for the policy's all-on-device weights: kept where they take at most half the host budget.
            Assert.Equal(keeps, runtime.KeepsHostCopies);
        }
    }
}
