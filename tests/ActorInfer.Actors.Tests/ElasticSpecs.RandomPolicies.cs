using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using Akka.Actor;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;

namespace ActorInfer.Actors.Tests;

/// <summary>
/// Random policies throughout a job (resident, offloaded, and offloaded with the cache on the device and the changes
/// signalled): nothing is lost, nothing runs twice, every policy is honoured once and no output changes.
/// </summary>
public sealed partial class ElasticSpecs
{
    /// <summary>
    /// Every block start and finish brings a random policy, most of them while a block runs. With the cache attended in
    /// place on the device, the changes are signalled as a planner signals them: a decoding layer of a one-batch step in
    /// progress stops for each and runs again unless the change dropped its batch.
    /// </summary>
    [Theory]
    [InlineData("resident")]
    [InlineData("offloaded")]
    [InlineData("offloaded, cache on the device, changes signalled")]
    public void Random_policy_changes_during_a_job_lose_nothing_and_change_no_output(string engineKind)
    {
        var (engine, owner) = engineKind switch
        {
            "resident" => (ResidentEngine(), new Owner()),
            "offloaded" => OffloadedEngine(),
            _ => OffloadedEngine(cacheOnDevice: true),
        };
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(engine, _factory, Layers(engine), planner: null));
        var random = new Random(2026);
        Func<BlockPolicy> pick = () => new BlockPolicy(1 + random.Next(3), 1 + random.Next(3), "random");
        // Every block start and every finished block brings a new policy: most arrive while a block runs.
        var sent = new[] { 1 }; // the starting policy below; the chaos actor counts the ones it sends
        var signal = engineKind.EndsWith("signalled") ? engine.Changes : null;
        // On the tensor thread beside the scheduler and the layers: its answer to a block's start is in the scheduler's
        // mailbox before the block's first layer ends, so which block each policy meets, and the drops, do not depend on timing.
        var chaos = Sys.ActorOf(Akka.Actor.Props.Create(() => new Chaos(scheduler, pick, sent, signal)).WithDispatcher(ActorInferSettings.TensorDispatcher));
        scheduler.Tell(new Observe(chaos));
        scheduler.Tell(new Observe(TestActor));
        const int count = 40;
        scheduler.Tell(new Enqueue(Enumerable.Range(0, count).Select(Item).ToArray()));
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(3, 3, "start"), Memory.TierBudgets.None));

        var results = new Dictionary<string, string>();
        var drops = 0;
        var honoured = 0;
        while (results.Count < count)
        {
            var message = ExpectMsg<object>(TimeSpan.FromSeconds(60));
            if (message is BatchesDropped) drops++;
            if (message is PolicyHonoured) honoured++;
            if (message is Finished finished)
                foreach (var r in finished.Results)
                    Assert.True(results.TryAdd(r.Key, OutputIds(r.ResultLine)), $"{r.Key} answered twice");
        }
        Assert.True(drops > 0, "the random policies should have made the scheduler drop batches");
        Assert.Equal(Reference(count), results);
        // Nothing is answered after every request has been: no request ran twice.
        var late = ReceiveWhile<object>(TimeSpan.FromMilliseconds(300), m => m);
        Assert.DoesNotContain(late, m => m is Finished);
        honoured += late.Count(m => m is PolicyHonoured);
        // Every policy sent was honoured once: the block shed its batches, fitted it already, or ended.
        Assert.Equal(Volatile.Read(ref sent[0]), honoured);
        // Each signalled change was taken: nothing stops for a change any more. Layers stopped for some of them.
        Assert.False(signal?.Waiting ?? false);
        if (signal is not null) Assert.True(signal.Yields > 0, "no layer stopped for a change");
        Sys.Stop(scheduler);
        engine.Dispose();
        owner.Dispose();
    }

    private sealed class Chaos : ReceiveActor
    {
        public Chaos(IActorRef scheduler, Func<BlockPolicy> pick, int[] sent, ActorInfer.Runtime.Schedule.ChangeSignal? signal)
        {
            void Send()
            {
                Interlocked.Increment(ref sent[0]);
                scheduler.Tell(new PlannerProtocol.PolicyChanged(pick(), Memory.TierBudgets.None) { Signalled = signal is not null });
                signal?.Sent();
            }
            Receive<BlockStarted>(_ => Send());
            Receive<BlockFinished>(_ => Send());
            // Signalled: also the next change as soon as one is honoured (the first 200), sent before the scheduler's next
            // layer starts, which then stops for it where it can.
            var more = signal is null ? 0 : 200;
            Receive<PolicyHonoured>(_ =>
            {
                if (more-- > 0) Send();
            });
            ReceiveAny(_ => { });
        }
    }
}
