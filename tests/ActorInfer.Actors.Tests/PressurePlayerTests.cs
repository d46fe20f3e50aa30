using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;

namespace ActorInfer.Actors.Tests;

public sealed class PressurePlayerTests
{
    private static readonly PressureEvent[] Steps =
    [
        new(1, null, 0, Tier.Gpu, 100),
        new(2, null, 3, Tier.Gpu, 50),
        new(3, null, 5, Tier.Cpu, 70),
        new(4, null, 9, Tier.Gpu, 200),
    ];

    [Fact]
    public void Step_events_are_sent_in_order_once_their_decoding_step_has_passed()
    {
        var sent = new List<int>();
        using var player = new PressurePlayer(Steps, e => sent.Add(e.Line));
        player.Start();
        // At step 0, before any step: the first event.
        Assert.Equal([1], sent);
        // A prefill (step 0 of a block) is not a decoding step.
        player.OnStep(0);
        player.OnStep(1);
        player.OnStep(2);
        Assert.Equal([1], sent);
        player.OnStep(3);
        Assert.Equal([1, 2], sent);
        player.OnStep(4);
        player.OnStep(5);
        Assert.Equal([1, 2, 3], sent);
        Assert.Equal(3, player.Sent);
        Assert.Equal(50, player.Budget(Tier.Gpu));
        Assert.Equal(70, player.Budget(Tier.Cpu));
        Assert.Null(player.Budget(Tier.Disk));
    }

    [Fact]
    public void When_nothing_fits_the_budgets_last_set_the_next_step_event_follows_at_once()
    {
        var sent = new List<int>();
        using var player = new PressurePlayer(Steps, e => sent.Add(e.Line));
        player.Start();
        for (var step = 1; step <= 3; step++) player.OnStep(step);
        Assert.Equal([1, 2], sent);
        // No policy for budgets older than the last event's: nothing is sent (a later answer is on its way).
        player.OnPolicy(null, new TierBudgets(100, 0, 0));
        Assert.Equal([1, 2], sent);
        // A policy for the last budgets: steps will pass, nothing is sent.
        player.OnPolicy(new BlockPolicy(1, 1, "one"), new TierBudgets(50, 0, 0));
        Assert.Equal([1, 2], sent);
        // None for the last budgets: no step will pass, so the next event is sent now, once.
        player.OnPolicy(null, new TierBudgets(50, 0, 0));
        Assert.Equal([1, 2, 3], sent);
        player.OnStep(4);
        player.OnStep(5);
        Assert.Equal([1, 2, 3], sent);
    }

    [Fact]
    public void A_step_that_sent_events_delivers_them_before_it_returns()
    {
        var log = new List<string>();
        using var player = new PressurePlayer(Steps, e => log.Add($"sent {e.Line}"), () => log.Add("delivered"));
        // Before the job runs the events due go as sent.
        player.Start();
        Assert.Equal(["sent 1"], log);
        player.OnStep(1);
        player.OnStep(2);
        Assert.Equal(["sent 1"], log);
        player.OnStep(3);
        Assert.Equal(["sent 1", "sent 2", "delivered"], log);
        player.OnStep(4);
        Assert.Equal(3, log.Count);
        // An event sent because nothing fits is not a step's: it goes as sent.
        player.OnPolicy(null, new TierBudgets(50, 0, 0));
        Assert.Equal(["sent 1", "sent 2", "delivered", "sent 3"], log);
    }

    [Fact]
    public void The_final_budgets_are_the_start_with_each_tiers_last_event()
    {
        var final = PressurePlayer.Final(Steps, new TierBudgets(1000, 2000, 3000));
        Assert.Equal(new TierBudgets(200, 70, 3000), final);
    }
}
