using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using ActorInfer.Planning;
using Akka.Actor;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;

namespace ActorInfer.Actors.Tests;

/// <summary>
/// When a policy counts as honoured, and how long that took: timed from the budget change behind it, at once for a
/// budget that rises, and for a fall that moves weights off the device once enough of them have left.
/// </summary>
public sealed partial class ElasticSpecs
{
    /// <summary>The time to honour a policy counts from the budget change behind it, not from its arrival.</summary>
    [Fact]
    public void The_time_to_honour_counts_from_the_budget_change()
    {
        var engine = ResidentEngine();
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(engine, _factory, Layers(engine), planner: null));
        scheduler.Tell(new Observe(TestActor));
        var changedAt = System.Diagnostics.Stopwatch.GetTimestamp() - System.Diagnostics.Stopwatch.Frequency / 2;
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 1, "one"), Memory.TierBudgets.None) { ChangedAt = changedAt });
        var honoured = ExpectMsg<PolicyHonoured>();
        Assert.InRange(honoured.Elapsed, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(30));
        // Its parts: nearly all of it was the way to the scheduler; the parts add up to the whole.
        Assert.InRange(honoured.Arrival, TimeSpan.FromMilliseconds(500), honoured.Elapsed);
        Assert.InRange((honoured.Arrival + honoured.ToBoundary + honoured.Applying - honoured.Elapsed).Duration(), TimeSpan.Zero, TimeSpan.FromMilliseconds(0.01));
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 2, "two"), Memory.TierBudgets.None));
        Assert.InRange(ExpectMsg<PolicyHonoured>().Elapsed, TimeSpan.Zero, TimeSpan.FromMilliseconds(450));
        engine.Dispose();
    }

    /// <summary>
    /// A budget that rises (or stays) was honoured when it changed: the tiers already held no more than the old one.
    /// Its time to honour is zero and its take-up (until the scheduler applied it) is kept beside it; a budget that
    /// falls is timed from its change as before.
    /// </summary>
    [Fact]
    public void A_budget_that_rises_is_honoured_at_its_change_and_one_that_falls_is_timed()
    {
        var (engine, owner) = OffloadedEngine();
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(engine, _factory, Layers(engine), planner: null));
        scheduler.Tell(new Observe(TestActor));
        long HalfSecondAgo() => System.Diagnostics.Stopwatch.GetTimestamp() - System.Diagnostics.Stopwatch.Frequency / 2;
        var first = new Memory.TierBudgets(1L << 30, 1L << 30, 0);
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 1, "first"), first) { ChangedAt = HalfSecondAgo() });
        var start = ExpectMsg<PolicyHonoured>();
        Assert.False(start.WithinAtChange, "the first budget has nothing before it to be within");
        Assert.InRange(start.Elapsed, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(30));

        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 2, "more"), first with { Gpu = 2L << 30 }) { ChangedAt = HalfSecondAgo() });
        var rise = ExpectMsg<PolicyHonoured>();
        Assert.True(rise.WithinAtChange, $"{rise}");
        Assert.Equal(TimeSpan.Zero, rise.Elapsed);
        Assert.InRange(rise.TakeUp, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(30));

        var held = engine.DeviceBytesHeld!.Value;
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 1, "less"), first with { Gpu = held + (64L << 20) }) { ChangedAt = HalfSecondAgo() });
        var fall = ExpectMsg<PolicyHonoured>();
        Assert.False(fall.WithinAtChange, $"{fall}");
        Assert.InRange(fall.Elapsed, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(30));
        Assert.Equal(fall.Elapsed, fall.TakeUp);
        owner.Dispose();
    }

    /// <summary>
    /// A fall that the weights' move meets (their device share goes to the CPU) is honoured once enough of them have
    /// left the device, not after the last one: the weights go one by one, and the first brings the tier within.
    /// </summary>
    [Fact]
    public void A_fall_that_moves_weights_off_the_device_is_honoured_once_enough_have_left()
    {
        var (engine, owner) = OffloadedEngine();
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(engine, _factory, Layers(engine), planner: null));
        scheduler.Tell(new Observe(TestActor));
        var first = new Memory.TierBudgets(1L << 30, 1L << 30, 0);
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 1, "first"), first));
        ExpectMsg<PolicyHonoured>();
        var held = engine.DeviceBytesHeld!.Value;
        Assert.True(held > 0, "the weights' device share is held on the device tier");

        var weightsOff = new Policy(1, 1, TierFractions.AllCpu, TierFractions.AllCpu, new TierFractions(0.5, 0.5, 0)) { CpuAttention = true };
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 1, "weights off") { Runtime = weightsOff }, first with { Gpu = held - 1 }));
        var fall = ExpectMsg<PolicyHonoured>();
        Assert.False(fall.WithinAtChange, $"{fall}");
        Assert.StartsWith("re-place until within", fall.ApplyingParts);
        // The move went on after the honour: every weight left the device.
        AwaitAssert(() => Assert.Equal(0, engine.DeviceBytesHeld!.Value));
        owner.Dispose();
    }
}
