using ActorInfer.Actors.Planner;
using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;
using ActorInfer.Runtime.Placement;
using ActorInfer.Runtime.Schedule;

namespace ActorInfer.Actors.Tests;

/// <summary>
/// A node's runtime stacks each layer's Q, K and V into one tensor where its first policy places them on one tier (a node
/// of several models loads OPT-30B into host memory first, so every layer is stacked), and the three then move as one.
/// On an H100 the node's planner, counting the tensors apart, found no policy for OPT-30B under the static split's
/// 35.82 GiB share (its corrections to the runtime's placement never converged), and the model served nothing. Counting
/// the runtime's own tensors, the search fits at once.
/// </summary>
public sealed class StackedWeightsPlanTests
{
    private static readonly ModelConfig Config = ModelConfigs.Resolve("opt-30b");

    [Fact]
    public void The_planner_counting_the_runtimes_stacked_tensors_fits_opt_30b_where_counting_them_apart_found_nothing()
    {
        using var source = new DummyWeightSource(Config, seed: 0);
        var hardware = HardwareProfiles.Resolve(Path.Combine(TestModels.RepositoryRoot, "tests", "fixtures", "hardware", "h100-measured.json"));
        var stacked = ScheduleLayer.For(Config, source, _ => true);
        // The node's share and what its planner then left of it: the CUDA context (0.52 GiB on that node) and the allocator's
        // allowance of the time (10% of the share; the tensors alone were counted); the CPU tier's split of 100 GiB by the two
        // models' weights.
        long share = 38465437696;
        var budget = new FittingSearch.Budget(WorkloadPlanner.RoundDown(share - (long)(0.52 * (1L << 30)) - share / 10),
            WorkloadPlanner.RoundDown(87560409189), 1);
        var options = new SearchOptions { MaxBlockSize = 8192, MaxGpuBatchSize = 8192, MaxNumGpuBatches = 8192, CpuAttention = null };
        ActorInfer.Runtime.Placement.TierBytes Held(Policy policy) => PlacementPlan.ForBlock(stacked, Config, policy, 2,
            Enumerable.Range(0, policy.NumGpuBatches).Select(_ => new BatchShape(policy.GpuBatchSize, 512, 544)).ToArray(), false).Total;
        var workload = new Workload(512, 32);

        Assert.Throws<PlacementDoesNotFitException>(() => FittingSearch.Find(ModelSpecs.From(Config, 2), workload, hardware, options, budget, Held));

        var spec = ModelSpecs.From(Config, 2, stacked);
        var found = FittingSearch.Find(spec, workload, hardware, options, budget, Held);
        var held = Held(found.Policy);
        Assert.True(held.Device <= budget.Gpu && held.Cpu <= budget.Cpu, $"{found.Policy}: {held}");
        // The search's count of the device's weights is the runtime's: the planner realizes the fractions on the same tensors.
        var realized = spec.RealizeWeights(found.Policy.Weights);
        var placed = PlacementPlan.ForWeights(stacked, found.Policy, 2, false).Weights;
        Assert.Equal(placed.Device, realized.Model.Gpu, tolerance: 1);
        Assert.True(found.Estimate.ThroughputTokensPerSecond > 20, $"{found.Policy}: {found.Estimate.ThroughputTokensPerSecond} token/s");
    }
}
