using ActorInfer.Actors.Scheduling;
using Akka.TestKit.Xunit2;

namespace ActorInfer.Actors.Tests;

/// <summary>One queue without priorities: the device's turns go round, in the order the schedulers asked.</summary>
public sealed class DeviceTurnsSpecs() : TestKit(TestModels.ActorConfig)
{
    private (DeviceTurns Turns, Akka.TestKit.TestProbe A, Akka.TestKit.TestProbe B, Akka.TestKit.TestProbe C) Fresh() =>
        (new DeviceTurns(), CreateTestProbe(), CreateTestProbe(), CreateTestProbe());

    [Fact]
    public void A_finished_block_hands_the_device_to_the_scheduler_that_asked_first_and_its_own_next_block_queues_behind()
    {
        var (turns, a, b, c) = Fresh();
        Assert.True(turns.TryTake(a.Ref));
        Assert.False(turns.TryTake(c.Ref));
        Assert.False(turns.TryTake(b.Ref));
        // Asking again keeps the place first taken.
        Assert.False(turns.TryTake(c.Ref));
        // A scheduler that does not hold the device cannot release it.
        turns.Release(b.Ref);
        Assert.Equal(a.Ref, turns.Holder);
        b.ExpectNoMsg(TimeSpan.FromMilliseconds(50));

        turns.Release(a.Ref);
        c.ExpectMsg<SchedulerProtocol.TurnFree>();
        b.ExpectNoMsg(TimeSpan.FromMilliseconds(50));
        // a has more work: it asks behind b, and b cannot jump c.
        Assert.False(turns.TryTake(a.Ref));
        Assert.False(turns.TryTake(b.Ref));
        Assert.True(turns.TryTake(c.Ref));

        turns.Release(c.Ref);
        b.ExpectMsg<SchedulerProtocol.TurnFree>();
        Assert.True(turns.TryTake(b.Ref));
        turns.Release(b.Ref);
        a.ExpectMsg<SchedulerProtocol.TurnFree>();
        Assert.True(turns.TryTake(a.Ref));
    }

    [Fact]
    public void A_scheduler_told_its_turn_with_nothing_to_start_passes_it_on()
    {
        var (turns, a, b, c) = Fresh();
        Assert.True(turns.TryTake(a.Ref));
        Assert.False(turns.TryTake(b.Ref));
        Assert.False(turns.TryTake(c.Ref));
        turns.Release(a.Ref);
        b.ExpectMsg<SchedulerProtocol.TurnFree>();
        // b's work was withdrawn meanwhile: it leaves, and c is told.
        turns.Leave(b.Ref);
        c.ExpectMsg<SchedulerProtocol.TurnFree>();
        // A scheduler leaving from the back of the line, or one that never asked, tells nobody.
        Assert.True(turns.TryTake(c.Ref));
        Assert.False(turns.TryTake(a.Ref));
        Assert.False(turns.TryTake(b.Ref));
        turns.Leave(b.Ref);
        turns.Leave(CreateTestProbe().Ref);
        a.ExpectNoMsg(TimeSpan.FromMilliseconds(50));
        // The holder leaving (its block could not open) frees the device for the next.
        turns.Leave(c.Ref);
        a.ExpectMsg<SchedulerProtocol.TurnFree>();
        Assert.Null(turns.Holder);
        Assert.True(turns.TryTake(a.Ref));
    }
}
