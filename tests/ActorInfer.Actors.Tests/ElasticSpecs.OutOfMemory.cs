using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using Akka.Actor;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;
using static TorchSharp.torch;

namespace ActorInfer.Actors.Tests;

/// <summary>
/// Memory that runs out: a device tier that refuses past a budget the planner was never told of (the block is
/// requeued and the next ones shrink until they fit), and requests that can never fit (they wait, then fail naming
/// why, and later ones run once memory returns).
/// </summary>
public sealed partial class ElasticSpecs
{
    /// <summary>
    /// The device runs out of memory behind the planner's back (its tier refuses past a budget the scheduler was never
    /// told of, as a device does when another tenant took memory): the block's sequences are requeued and the next
    /// blocks run at half the size until they fit; every request finishes once, unchanged.
    /// </summary>
    [Fact]
    public void A_device_out_of_memory_is_pressure_and_every_request_finishes_unchanged()
    {
        using var source = SafetensorsCheckpoint.Open(_modelDir);
        var all = TierFractions.AllGpu;
        var tiers = TierSet.Create(1L << 30, 1L << 30, null, 0);
        using var copies = new CpuCopyEngine();
        using var runtime = new OffloadRuntime(Config, source, new Policy(1, 1, all, all, all), tiers, copies, ScalarType.Float32);
        // Room for one GPU batch of 2 of the longest requests (8 prompt tokens, 9 new ones): a block of 2 x 3 cannot open.
        tiers.Device.SetBudget(runtime.PlanBlock(2, 1, 17, 17).Total.Device);
        var engine = new OffloadedEngine(runtime, _factory.Decode);
        // A node whose planner knows no budget: the policy stands until the device refuses it.
        using var driver = ActorInfer.Actors.Node.LocalNode.Start(new ActorInfer.Actors.Node.NodeParts(engine, _factory, tiers, Memory.Tier.Gpu,
            CpuTierActor: true, new FixedPolicyPlanner(new BlockPolicy(2, 3, "larger than the device"), Memory.TierBudgets.None, adapting: null),
            Buckets: null, new Memory.MemoryProtocol.Settings(null, null, null, TimeSpan.FromDays(1), 0), Probe: null, MaxWaitForMemory: null));
        var lines = driver.Run(Enumerable.Range(0, 8).Select(Item).ToArray(), TimeSpan.FromSeconds(60));
        var results = Enumerable.Range(0, 8).ToDictionary(i => $"k{i}", i => OutputIds(lines[i]));
        Assert.Equal(Reference(8), results);
        var oom = Assert.Single(driver.OutOfMemory);
        Assert.Equal(6, oom.Requeued);
        Assert.Contains("Device tier", oom.Error);
        engine.Dispose();
    }

    [Fact]
    public void Requests_that_can_never_fit_wait_then_fail_with_the_reason_and_later_ones_run_when_memory_returns()
    {
        var engine = ResidentEngine();
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(engine, _factory, Layers(engine), planner: null, maxWaitForMemory: TimeSpan.FromMilliseconds(400)));
        scheduler.Tell(new PlannerProtocol.PolicyChanged(null, Memory.TierBudgets.None));
        scheduler.Tell(new Enqueue([Item(0), Item(1)]));

        // Nothing fits: no block starts, and after the limit both fail, naming why.
        var failed = ExpectMsg<Finished>(TimeSpan.FromSeconds(10));
        var lines = failed.Results.ToList();
        if (lines.Count < 2) lines.AddRange(ExpectMsg<Finished>(TimeSpan.FromSeconds(10)).Results);
        Assert.Equal(["k0", "k1"], lines.Select(r => r.Key).Order());
        Assert.All(lines, r => Assert.Contains("no memory", r.ResultLine));
        scheduler.Tell(GetStatus.Instance);
        Assert.Equal(0, ExpectMsg<SchedulerStatus>().Queued);

        // Memory returns: a new request runs and its tokens are the reference's.
        scheduler.Tell(new Enqueue([Item(2)]));
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 1, "back"), Memory.TierBudgets.None));
        var done = ExpectMsg<Finished>(TimeSpan.FromSeconds(30));
        Assert.Equal(Reference(3)["k2"], OutputIds(done.Results.Single().ResultLine));
        engine.Dispose();
    }
}
