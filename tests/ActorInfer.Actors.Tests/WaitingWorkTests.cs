using ActorInfer.Actors.Scheduling;
using ActorInfer.Model.Generation;
using Akka.Actor;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;

namespace ActorInfer.Actors.Tests;

/// <summary>The scheduler's queue of accepted work: its order, withdrawals, and waits for memory.</summary>
public sealed class WaitingWorkTests
{
    private static WorkItem Item(string key, int priority = 0) =>
        new(key, key, new CompletionRequest { Prompt = Prompt.FromIds([2, 3]), MaxTokens = 1 }, 0, priority);

    private static string Keys(IEnumerable<(WorkItem Item, IActorRef ReplyTo)> items) => string.Join(",", items.Select(i => i.Item.Key));

    [Fact]
    public void Higher_priority_first_then_arrival_order_and_a_requeued_sequence_ahead_of_its_priority()
    {
        var work = new WaitingWork();
        work.Add(Item("a"), ActorRefs.Nobody);
        work.Add(Item("b", priority: 1), ActorRefs.Nobody);
        work.Add(Item("c"), ActorRefs.Nobody);
        work.Requeue(Item("r1"), ActorRefs.Nobody);
        work.Requeue(Item("r2"), ActorRefs.Nobody);
        work.Requeue(Item("h", priority: 1), ActorRefs.Nobody);
        Assert.Equal("h,b,r2", Keys(work.Take(3)));
        Assert.Equal("r1,a,c", Keys(work.Take(10)));
        Assert.Equal(0, work.Count);
    }

    [Fact]
    public void Withdrawn_items_leave_and_the_rest_keep_their_order()
    {
        var work = new WaitingWork();
        foreach (var key in new[] { "a", "b", "c", "d" }) work.Add(Item(key), ActorRefs.Nobody);
        Assert.Equal(2, work.Withdraw(new HashSet<string> { "b", "d", "x" }));
        Assert.Equal(0, work.Withdraw(new HashSet<string> { "b" }));
        Assert.Equal("a,c", Keys(work.Take(10)));
    }

    [Fact]
    public void Only_items_waiting_for_memory_since_before_the_limit_are_taken()
    {
        var work = new WaitingWork();
        work.Add(Item("a"), ActorRefs.Nobody);
        work.StartMemoryWaits();
        work.Add(Item("b"), ActorRefs.Nobody);
        // b has not started waiting for memory: nothing takes it however long the limit.
        Assert.Empty(work.TakeWaitedForMemory(TimeSpan.FromHours(1)));
        Assert.Equal("a", Keys(work.TakeWaitedForMemory(TimeSpan.Zero)));
        Assert.Empty(work.TakeWaitedForMemory(TimeSpan.Zero));
        // Once a policy fits, the waits end: b's later wait starts from scratch.
        work.StartMemoryWaits();
        work.EndMemoryWaits();
        Assert.Empty(work.TakeWaitedForMemory(TimeSpan.Zero));
        Assert.Equal("b", Keys(work.Take(10)));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_dropped_sequence_is_checkpointed_and_resumes_or_regenerates(bool regenerate)
    {
        var work = new WaitingWork(regenerate: regenerate);
        var item = Item("a");
        var state = new SequenceState(item.Request, [2, 3], 0, eosTokenId: 1);
        state.Restore([7, 8], [-0.5f, -0.25f]);
        var (tell, tokens) = work.RequeueDropped(4, [new BlockEntry(item, ActorRefs.Nobody, state, null)]);
        Assert.Equal(4, tokens);
        // The enqueuer hears the progress either way (a node that restarts resumes from its journal).
        var told = Assert.Single(Assert.Single(tell).Checkpoints.Items);
        Assert.Equal([7, 8], told.Checkpoint.OutputIds);
        var (taken, _) = Assert.Single(work.Take(1));
        // A batch-invariant engine forms every generated token by decoding: the sequence starts again from its prompt.
        if (regenerate) Assert.Null(taken.Resume);
        else Assert.Equal([7, 8], taken.Resume!.OutputIds);
        // An item that arrives with a checkpoint (recovered from a journal) is treated alike.
        work.Add(item with { Resume = told.Checkpoint }, ActorRefs.Nobody);
        Assert.Equal(regenerate, Assert.Single(work.Take(1)).Item.Resume is null);
    }
}
