using ActorInfer.Model.Config;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Placement;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

/// <summary>
/// The runtime stacks a layer's Q, K and V only where the policy places all three on one tier, so its weights take on every
/// tier the bytes they took with the three apart, whatever the fractions.
/// </summary>
public sealed class QkvStackingTests
{
    public static TheoryData<string, double, double> Fractions() => new()
    {
        { "all device", 1, 0 },
        { "FlexGen's OPT-30B split, 20/80", 0.2, 0.8 },
        { "thirds", 1 / 3.0, 1 / 3.0 },
        { "a tenth on the device", 0.1, 0.5 },
    };

    [Theory]
    [MemberData(nameof(Fractions))]
    public void Weights_take_the_bytes_per_tier_they_took_apart(string name, double gpu, double cpu)
    {
        foreach (var config in new ModelConfig[] { TestConfigs.PreLn, TestConfigs.Llama, TestConfigs.QwenLike })
        {
            using var source = new RandomWeights(config, seed: 5);
            var fractions = new TierFractions(gpu, cpu, Math.Max(0, 1 - gpu - cpu));
            var policy = new Policy(2, 1, fractions, TierFractions.AllGpu, TierFractions.AllGpu);
            var apart = PlacementPlan.ForWeights(ScheduleLayer.For(config, source), policy, 4, deviceIsCpu: true);
            var folder = Harness.TempFolder();
            try
            {
                var tiers = TierSet.Create(Harness.Generous, Harness.Generous, folder, Harness.Generous);
                using var copies = new CpuCopyEngine();
                using var engine = new OffloadRuntime(config, source, policy, tiers, copies, ScalarType.Float32);
                Assert.Equal(apart.Weights, engine.WeightPlan.Weights);
                foreach (var tier in tiers.All()) Assert.Equal(apart.Weights.Of(tier.Kind), tier.BytesHeld);
            }
            finally
            {
                Directory.Delete(folder, recursive: true);
            }
        }
        _ = name;
    }
}
