using System.Text.Json;
using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using Akka.Actor;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;

namespace ActorInfer.Actors.Tests;

/// <summary>
/// A batch-invariant engine under random policies that drop batches (their sequences requeued, to regenerate) gives every
/// request the tokens and log-probabilities, to the last bit, of a calm run in blocks of another geometry.
/// </summary>
public sealed partial class ElasticSpecs
{
    [Fact]
    public void Batch_invariant_requests_keep_every_bit_through_random_policies_and_drops()
    {
        const int count = 30;
        var items = Enumerable.Range(0, count).Select(i => Item(i) with { Request = Request(i) with { Logprobs = 1 } }).ToArray();
        var (calm, calmDrops) = InvariantRun(items, chaos: false);
        var (pressed, drops) = InvariantRun(items, chaos: true);
        Assert.Equal(0, calmDrops);
        Assert.True(drops > 0, "the random policies should have made the scheduler drop batches");
        Assert.Equal(calm, pressed);
    }

    /// <summary>Each request's output tokens and log-probabilities (as written: the shortest text that reads back the same float).</summary>
    private (Dictionary<string, string> Results, int Drops) InvariantRun(WorkItem[] items, bool chaos)
    {
        var (engine, owner) = OffloadedEngine(batchInvariant: true);
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(engine, _factory, Layers(engine), planner: null));
        var random = new Random(2027);
        if (chaos)
        {
            Func<BlockPolicy> pick = () => new BlockPolicy(1 + random.Next(3), 1 + random.Next(3), "random");
            var monitor = Sys.ActorOf(Akka.Actor.Props.Create(() => new Chaos(scheduler, pick, new[] { 1 }, null))
                .WithDispatcher(ActorInferSettings.TensorDispatcher));
            scheduler.Tell(new Observe(monitor));
        }
        scheduler.Tell(new Observe(TestActor));
        scheduler.Tell(new Enqueue(items));
        scheduler.Tell(new PlannerProtocol.PolicyChanged(chaos ? new BlockPolicy(3, 3, "start") : new BlockPolicy(4, 2, "calm"), Memory.TierBudgets.None));
        var results = new Dictionary<string, string>();
        var drops = 0;
        while (results.Count < items.Length)
        {
            var message = ExpectMsg<object>(TimeSpan.FromSeconds(60));
            if (message is BatchesDropped) drops++;
            if (message is Finished finished)
                foreach (var r in finished.Results)
                {
                    var line = JsonDocument.Parse(r.ResultLine).RootElement;
                    Assert.True(results.TryAdd(r.Key, $"{line.GetProperty("output_ids").GetRawText()} {line.GetProperty("output_logprobs").GetRawText()}"),
                        $"{r.Key} answered twice");
                }
        }
        Sys.Stop(scheduler);
        engine.Dispose();
        owner.Dispose();
        return (results, drops);
    }
}
