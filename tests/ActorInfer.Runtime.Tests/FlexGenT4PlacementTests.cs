using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;
using ActorInfer.Runtime.Placement;
using ActorInfer.Runtime.Schedule;

namespace ActorInfer.Runtime.Tests;

/// <summary>
/// FlexGen's OPT-30B T4 policy (48 x 3, weights 20/80, cache and activations on the CPU) as this runtime places it,
/// against the planner's figure for it: the planner must not count less than the runtime's accounted buffers.
/// </summary>
public sealed class FlexGenT4PlacementTests
{
    [Fact]
    public void The_runtime_places_20_percent_as_flexgen_does_and_the_planner_counts_at_least_its_buffers()
    {
        var config = ModelConfigs.Named("opt-30b");
        using var source = new DummyWeightSource(config);
        var layers = ScheduleLayer.For(config, source);
        var policy = new Policy(48, 3, new TierFractions(0.2, 0.8, 0), TierFractions.AllCpu, TierFractions.AllCpu) { CpuAttention = true };
        var batches = Enumerable.Repeat(new BatchShape(48, 512, 544), 3).ToArray();
        var plan = PlacementPlan.ForBlock(layers, config, policy, 2, batches, deviceIsCpu: false);

        // Whole tensors of each attention and each MLP by their midpoints, disk first: the output projection and the
        // vectors after it (its bias, the LayerNorms, fc2's bias) of every layer, and the learned positions, whose
        // midpoint in the input layer is at 98%: 8.3% of the model's weights, as FlexGen placed them on its T4.
        long h = config.HiddenSize;
        Assert.Equal((config.NumHiddenLayers * (h * h + 6 * h) + 2050 * h) * 2, plan.Weights.Device);
        var spec = ModelSpecs.From(config, 2);
        Assert.InRange(plan.Weights.Device / (double)spec.TotalWeightBytes, 0.0825, 0.0830);

        // The planner's parts other than the computation (which the runtime does not account) hold at least the
        // runtime's accounted device bytes; with the computation, the placement fits the T4's 16 GB.
        var estimate = CostModel.Evaluate(spec, new Workload(512, 32), policy, HardwareProfiles.T4FlexGen);
        var compute = estimate.PrefillGpuParts.Single(p => p.Name == "compute").Bytes;
        Assert.True(estimate.PrefillMemory.Gpu - compute >= plan.Total.Device,
            $"planner {estimate.PrefillMemory.Gpu - compute} B without the computation, runtime {plan.Total.Device} B");
        Assert.True(plan.Total.Device + compute < 16e9, $"{(plan.Total.Device + compute) / 1e9:0.00} GB");
    }
}
