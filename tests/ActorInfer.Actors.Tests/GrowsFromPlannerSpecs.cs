using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using ActorInfer.TestSupport;
using Akka.Actor;
using Akka.TestKit.Xunit2;
using static TorchSharp.torch;
using Tier = ActorInfer.Actors.Memory.Tier;

namespace ActorInfer.Actors.Tests;

/// <summary>
/// Conservative sizing with a memory floor, planned with placements: the planner's policy raises the firm policy's weights
/// into the budget and names the firm placement it raised them from, so that an engine grows them in rather than placing them.
/// </summary>
public sealed class GrowsFromPlannerSpecs : TestKit, IDisposable
{
    private readonly DummyWeightSource _source = new(TestModels.Tiny, 3);
    private readonly CpuCopyEngine _copies = new();
    private readonly OffloadRuntime _runtime;

    public GrowsFromPlannerSpecs() : base(TestModels.ActorConfig)
    {
        var all = TierFractions.AllGpu;
        _runtime = new OffloadRuntime(TestModels.Tiny, _source, new Policy(1, 1, all, all, all), TierSet.Create(1L << 30, 1L << 30, null, 0), _copies,
            ScalarType.Float32);
    }

    void IDisposable.Dispose()
    {
        Shutdown();
        _runtime.Dispose();
        _copies.Dispose();
        _source.Dispose();
    }

    [Fact]
    public void A_policy_raised_above_its_floor_names_the_firm_placement_it_grows_from()
    {
        var planner = new WorkloadPlanner(_runtime, HardwareProfiles.T4FlexGen, "built-in", PlannerSettings.Default, 64, 8, Tier.Gpu);
        TierBudgets Gpu(long bytes) => new(bytes, 1L << 30, 0);
        // The floor: the least budget that holds a policy (to within 1 KiB), which keeps weights off the device where a budget
        // of 1 GiB holds them all.
        var (low, floor) = (0L, 1L << 30);
        while (floor - low > 1024)
        {
            var mid = (low + floor) / 2;
            if (planner.Plan(Gpu(mid)) is null) low = mid;
            else floor = mid;
        }
        Assert.True(planner.Plan(Gpu(floor))!.Runtime!.Weights.Gpu < 1);
        var firm = planner.Plan(Gpu(floor))!;
        var raised = planner.Raise(firm, Gpu(1L << 30));
        Assert.NotEqual(firm.Runtime, raised.Runtime);

        var memory = Sys.ActorOf(MemoryProtocol.Props(new MemoryProtocol.Settings(1L << 30, 1L << 30, null, TimeSpan.FromHours(1), 1), null));
        var subscriber = CreateTestProbe();
        var conservative = Sys.ActorOf(PlannerProtocol.Props(planner, memory, new PlannerProtocol.Headroom(Tier.Gpu, 4) { Floor = floor }));
        conservative.Tell(new PlannerProtocol.Subscribe(subscriber.Ref));
        var policy = subscriber.FishForMessage<PlannerProtocol.PolicyChanged>(m => m.Policy is not null, TimeSpan.FromSeconds(10)).Policy!;
        Assert.Equal(raised.Runtime, policy.Runtime);
        Assert.Equal(firm.Runtime, policy.GrowsFrom);
        Assert.True(policy.KeepsRunningBlocks);

        // Without conservative sizing nothing is raised: the policy for the budget as it is, with no firm placement.
        var plain = Sys.ActorOf(PlannerProtocol.Props(planner, memory, new PlannerProtocol.Headroom(Tier.Gpu, 0) { Floor = floor }));
        plain.Tell(new PlannerProtocol.Subscribe(subscriber.Ref));
        var exact = subscriber.FishForMessage<PlannerProtocol.PolicyChanged>(m => m.Policy is { KeepsRunningBlocks: false }, TimeSpan.FromSeconds(10)).Policy!;
        Assert.Null(exact.GrowsFrom);
        Assert.Equal(planner.Plan(Gpu(1L << 30))!.Runtime, exact.Runtime);
    }
}
