using ActorInfer.Actors.Planner;
using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;
using ActorInfer.Runtime.Placement;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using Xunit.Abstractions;

namespace ActorInfer.Actors.Tests;

/// <summary>
/// The node's search over the GPU budgets an arbiter may hand a model of the two-tenant replay on an H100 or an H200 (the
/// card's measured profile, the runtime's stacked tensors, the CPU budget the node's split gives it): every budget from 4 GiB to the
/// device's gets a policy that fits it in the runtime's own placement, and more memory is never predicted slower. (A
/// share for which the search found nothing once left a model of a GPU run serving nothing: StackedWeightsPlanTests.)
/// </summary>
public sealed class BudgetSweepPlanTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("opt-30b", 87560409189L, "h100-measured.json", 72)]
    [InlineData("opt-6.7b", 19_000_000_000L, "h100-measured.json", 72)]
    [InlineData("opt-30b", 87560409189L, "h200-measured.json", 131)]
    [InlineData("opt-6.7b", 19_000_000_000L, "h200-measured.json", 131)]
    public void Every_share_gets_a_policy_that_fits_and_more_memory_is_never_predicted_slower(string name, long cpu, string profile, double maxGib)
    {
        var config = ModelConfigs.Resolve(name);
        using var source = new DummyWeightSource(config, seed: 0);
        var hardware = HardwareProfiles.Resolve(Path.Combine(TestModels.RepositoryRoot, "tests", "fixtures", "hardware", profile));
        var stacked = ScheduleLayer.For(config, source, _ => true);
        var options = new SearchOptions { MaxBlockSize = 8192, MaxGpuBatchSize = 8192, MaxNumGpuBatches = 8192, CpuAttention = null };
        ActorInfer.Runtime.Placement.TierBytes Held(Policy policy) => PlacementPlan.ForBlock(stacked, config, policy, 2,
            Enumerable.Range(0, policy.NumGpuBatches).Select(_ => new BatchShape(policy.GpuBatchSize, 512, 544)).ToArray(), false).Total;
        var spec = ModelSpecs.From(config, 2, stacked);
        var last = 0.0;
        for (var gib = 4.0; gib <= maxGib; gib += 2.5)
        {
            // What the node's planner leaves of a share: the CUDA context (0.52 GiB on an H100 node) and the allocator's allowance.
            var share = (long)(gib * (1L << 30));
            var budget = new FittingSearch.Budget(WorkloadPlanner.RoundDown(share - (long)(0.52 * (1L << 30)) - DeviceReserve.AllowanceFor(share)),
                WorkloadPlanner.RoundDown(cpu), 1);
            var found = FittingSearch.Find(spec, new Workload(512, 32), hardware, options, budget, Held);
            var held = Held(found.Policy);
            var speed = found.Estimate.ThroughputTokensPerSecond;
            output.WriteLine($"{gib:F1} GiB: {found.Policy}: {speed:F1} token/s, {held.Device / (double)(1L << 30):F2} GiB on the device");
            Assert.True(held.Device <= budget.Gpu && held.Cpu <= budget.Cpu, $"{gib} GiB: {found.Policy} holds {held}");
            Assert.True(speed >= last * 0.99, $"{gib} GiB: {speed:F1} token/s, {last:F1} under less memory");
            last = Math.Max(last, speed);
        }
    }
}
