using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using Akka.Actor;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;

namespace ActorInfer.Actors.Tests;

/// <summary>
/// A budget change at every point of a block's life: the same small job is run once per engine call of an unpressured
/// run, with a change sent (as a planner sends one: into the scheduler's mailbox, then the signal raised) from inside
/// that call. Wherever it lands (an embedding, a decoding layer that may stop for it, an output head, between two heads,
/// while tokens land) every request finishes once, with its unpressured tokens, and the change is honoured.
/// </summary>
public sealed partial class ElasticSpecs
{
    /// <summary>
    /// The changes swept, by the call they are sent from, for blocks of three batches of <c>perBatch</c> sequences: room
    /// for one batch, for one sequence less than the block, and the same policy again.
    /// </summary>
    private static BlockPolicy[] SweptChanges(int perBatch) =>
        [new BlockPolicy(perBatch, 1, "one batch"), new BlockPolicy(3 * perBatch - 1, 1, "one sequence less"), new BlockPolicy(perBatch, 3, "three batches")];

    [Theory]
    [InlineData(true, 1)]
    [InlineData(false, 1)]
    [InlineData(true, 2)]
    public void A_change_sent_from_any_engine_call_of_a_block_leaves_every_output_unchanged(bool cacheOnDevice, int perBatch)
    {
        var items = Enumerable.Range(0, 3 * perBatch).Select(Item).ToArray();
        var reference = Reference(items);
        var changes = SweptChanges(perBatch);
        // The unpressured run's engine calls: each is a point to send the change from.
        var (calls, honoured) = RunWithChangeAt(cacheOnDevice, items, perBatch, at: null, changes[0], reference, honours: null);
        Assert.True(calls > 30, $"only {calls} engine calls");
        for (var at = 1; at <= calls; at++)
            RunWithChangeAt(cacheOnDevice, items, perBatch, at, changes[at % changes.Length], reference, honours: honoured + 1);
    }

    /// <summary>
    /// Runs <paramref name="items"/> under three batches of <paramref name="perBatch"/> sequences, the change sent from engine call <paramref name="at"/>
    /// (none: null); asserts every output is <paramref name="reference"/>'s and, with a change, that it was sent and the
    /// policies honoured number <paramref name="honours"/>. Returns the engine calls made and the policies honoured.
    /// </summary>
    private (int Calls, int Honoured) RunWithChangeAt(bool cacheOnDevice, WorkItem[] items, int perBatch, int? at, BlockPolicy change,
        Dictionary<string, string> reference, int? honours)
    {
        var (inner, owner) = OffloadedEngine(cacheOnDevice);
        var engine = new ChangeFromCall(inner, c => c.Number == at, change);
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(engine, _factory, Layers(engine), planner: null));
        engine.Scheduler = scheduler;
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(perBatch, 3, "three batches"), Memory.TierBudgets.None));
        scheduler.Tell(new Observe(TestActor));
        scheduler.Tell(new Enqueue(items));
        var honoured = 0;
        var results = Results(items.Length, m =>
        {
            if (m is PolicyHonoured) honoured++;
        });
        Assert.True(reference.OrderBy(r => r.Key).SequenceEqual(results.OrderBy(r => r.Key)),
            $"call {at}: outputs differ from the unpressured run's: {string.Join("; ", results.OrderBy(r => r.Key))} against {string.Join("; ", reference.OrderBy(r => r.Key))}");
        if (at is { } k)
        {
            Assert.True(engine.Sent, $"call {k}: the change was not sent");
            // A change that lands after the last block is honoured after the results.
            while (honoured < honours)
            {
                FishForMessage(m => m is PolicyHonoured, TimeSpan.FromSeconds(10), $"call {k}: the change was not honoured");
                honoured++;
            }
            Assert.Equal(honours, honoured);
            Assert.False(inner.Changes!.Waiting, $"call {k}: the change signal is still raised");
        }
        Sys.Stop(scheduler);
        engine.Dispose();
        owner.Dispose();
        return (engine.Calls.Count, honoured);
    }
}
