using ActorInfer.Actors.Arbiter;
using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Node;
using ActorInfer.Actors.Planner;
using Akka.Configuration;

namespace ActorInfer.Actors.Tests;

/// <summary>The GPU arbiter's division of the compute tier, conservative block sizing's headroom, and the models list.</summary>
public sealed class ArbitrationTests
{
    private const long MiB = 1L << 20;

    [Fact]
    public void A_demand_counts_sequences_on_a_ladder_of_sizes_one_and_a_half_times_apart()
    {
        Assert.Equal([0, 1, 2, 3, 4, 6, 6, 8, 8, 12, 12, 12, 12, 16, 24, 32, 48, 64, 96],
            new[] { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 17, 25, 33, 49, 65 }.Select(GpuArbiterActor.Ladder));
        Assert.Equal(3 << 20, GpuArbiterActor.Ladder((2 << 20) + 1));
    }

    [Fact]
    public void The_higher_priority_gets_its_demand_and_the_lower_the_rest()
    {
        // 100 MiB: chat (priority 10) asks 70, batch (0) asks 50: chat 70, batch the 30 left.
        var shares = Arbitration.Divide(100 * MiB, [new Claim("batch", 0, 50 * MiB), new Claim("chat", 10, 70 * MiB)]);
        Assert.Equal([30 * MiB, 70 * MiB], shares);
        // Chat idle (asks 10): batch gets all that is left, 90, more than it asked for (the rest is the lower ones').
        shares = Arbitration.Divide(100 * MiB, [new Claim("batch", 0, 50 * MiB), new Claim("chat", 10, 10 * MiB)]);
        Assert.Equal([90 * MiB, 10 * MiB], shares);
    }

    [Fact]
    public void Floors_come_first_and_ceilings_bound_every_share()
    {
        // Chat asks 120 of 100, batch keeps its floor of 20: chat 80. Then chat's ceiling of 60 leaves batch 40.
        Assert.Equal([20 * MiB, 80 * MiB],
            Arbitration.Divide(100 * MiB, [new Claim("batch", 0, 50 * MiB, Floor: 20 * MiB), new Claim("chat", 10, 120 * MiB)]));
        Assert.Equal([40 * MiB, 60 * MiB],
            Arbitration.Divide(100 * MiB, [new Claim("batch", 0, 10 * MiB), new Claim("chat", 10, 120 * MiB, Ceiling: 60 * MiB)]));
        // Both capped below the budget: the shares stop at the ceilings (30 + 50 of 100).
        Assert.Equal([30 * MiB, 50 * MiB],
            Arbitration.Divide(100 * MiB, [new Claim("batch", 0, 10 * MiB, Ceiling: 30 * MiB), new Claim("chat", 10, 20 * MiB, Ceiling: 50 * MiB)]));
    }

    [Fact]
    public void Equal_priorities_get_their_demands_in_order_and_share_the_rest_evenly()
    {
        // 100: a asks 30, b asks 40, both priority 1: 30 and 40, then the 30 left evenly: 45 and 55.
        Assert.Equal([45 * MiB, 55 * MiB], Arbitration.Divide(100 * MiB, [new Claim("a", 1, 30 * MiB), new Claim("b", 1, 40 * MiB)]));
        // Three levels: the top gets its demand, the middle its demand, the rest goes to both below the top.
        var shares = Arbitration.Divide(100 * MiB, [new Claim("top", 2, 50 * MiB), new Claim("mid", 1, 20 * MiB), new Claim("low", 0, 10 * MiB)]);
        Assert.Equal([50 * MiB, 30 * MiB, 20 * MiB], shares);
        Assert.Equal(100 * MiB, shares.Sum());
    }

    [Fact]
    public void Among_equal_priorities_a_running_block_gets_its_demand_before_a_waiting_queue()
    {
        // 100: a (first in order) waits with 70, b runs a block of 60: b keeps its 60, a gets the 40 left.
        Assert.Equal([40 * MiB, 60 * MiB], Arbitration.Divide(100 * MiB, [new Claim("a", 1, 70 * MiB), new Claim("b", 1, 60 * MiB, Running: true)]));
        // Neither runs: configuration order, a first.
        Assert.Equal([70 * MiB, 30 * MiB], Arbitration.Divide(100 * MiB, [new Claim("a", 1, 70 * MiB), new Claim("b", 1, 60 * MiB)]));
        // A higher priority still goes first, whether or not the other runs.
        Assert.Equal([70 * MiB, 30 * MiB], Arbitration.Divide(100 * MiB, [new Claim("a", 2, 70 * MiB), new Claim("b", 1, 60 * MiB, Running: true)]));
    }

    [Fact]
    public void A_floor_equal_to_the_ceiling_is_a_static_split()
    {
        // The static-split baseline: 60 and 40 of 100 whatever either asks.
        foreach (var (chat, batch) in new[] { (90L, 10L), (10L, 90L), (0L, 0L) })
            Assert.Equal([40 * MiB, 60 * MiB], Arbitration.Divide(100 * MiB, [
                new Claim("batch", 0, batch * MiB, Floor: 40 * MiB, Ceiling: 40 * MiB),
                new Claim("chat", 10, chat * MiB, Floor: 60 * MiB, Ceiling: 60 * MiB)]));
    }

    [Fact]
    public void The_firm_budget_is_the_budget_less_its_excess_over_the_lowest_fall_times_how_often_budgets_fell()
    {
        var history = new PressureHistory(4);
        Assert.Equal(100, history.FirmFor(100));
        // Four blocks from 100: one fell to 60, three did not fall: 100 - 40 x 1/4 = 90; from 80, 80 - 20 x 1/4 = 75.
        history.BlockStarted(100);
        history.Budget(80);
        history.Budget(60);
        history.Budget(100);
        history.BlockEnded();
        for (var i = 0; i < 3; i++)
        {
            history.BlockStarted(100);
            history.Budget(120);
            history.BlockEnded();
        }
        Assert.Equal(90, history.FirmFor(100));
        Assert.Equal(75, history.FirmFor(80));
        // Below the lowest fall the budget is firm as it is.
        Assert.Equal(50, history.FirmFor(50));
        // Four more without a fall push the fall out of the history.
        for (var i = 0; i < 4; i++)
        {
            history.BlockStarted(100);
            history.BlockEnded();
        }
        Assert.Equal(100, history.FirmFor(100));
        // Falls to 40 in every block, from any start: the firm level is 40 whatever the budget (a level, not a fraction of it)...
        foreach (var start in new[] { 100L, 60, 80, 50 })
        {
            history.BlockStarted(start);
            history.Budget(40);
            history.BlockEnded();
        }
        Assert.Equal(40, history.FirmFor(100));
        Assert.Equal(40, history.FirmFor(70));
        // ... but never below a tenth of the budget.
        Assert.Equal(100, history.FirmFor(1000));
        Assert.Equal(100, new PressureHistory(0).FirmFor(100));
        // A floor is the history's prior: four falls to it before any block, so the first blocks plan for the floor...
        var floored = new PressureHistory(4, floor: 30);
        Assert.Equal(30, floored.FirmFor(100));
        Assert.Equal(20, floored.FirmFor(20));
        floored.BlockStarted(100);
        floored.Budget(60);
        floored.BlockEnded();
        Assert.Equal(30, floored.FirmFor(100));
        // ... and blocks that end without a fall push it out, one prior a block: the fall to 60 stays in the window longest.
        // One quiet block: falls in 3 of 4, the lowest 30: 100 - 70 x 3/4 (the headroom rounded down: 48). Two quiet:
        // 100 - 70 x 2/4 = 65. Three: only the fall to 60 is left, 100 - 40 x 1/4 = 90. Four: none, the budget as it is.
        foreach (var expected in new long[] { 48, 65, 90, 100 })
        {
            floored.BlockStarted(100);
            floored.BlockEnded();
            Assert.Equal(expected, floored.FirmFor(100));
        }
        Assert.Equal(100, new PressureHistory(0, floor: 30).FirmFor(100));
    }

    private static ActorInferSettings Load(string hocon) =>
        SettingsLoader.Load([ConfigurationFactory.ParseString(hocon)], NodeModel.Problem, TestModels.RepositoryRoot);

    [Fact]
    public void A_models_list_is_read_and_checked()
    {
        var s = Load("""
            actorinfer.models = [
              { name = "chat", model = "models/opt-tiny", priority = 10, memory-ceiling = "3MiB" },
              { name = "batch", model = "opt-125m", memory-floor = "1MiB", weights-seed = 7, static-share = on },
            ]
            actorinfer.planner.headroom-history = 8
            """);
        Assert.True(s.ServesSeveralModels);
        Assert.Equal(["chat", "batch"], s.ServedModels.Select(m => m.Name));
        Assert.Equal(new ServedModelSettings("chat", Path.Combine(TestModels.RepositoryRoot, "models", "opt-tiny"), 10, null, 3 * MiB, 0), s.Models[0]);
        Assert.Equal(new ServedModelSettings("batch", "opt-125m", 0, MiB, null, 7, StaticShare: true), s.Models[1]);
        Assert.Equal("chat", s.Http.ServedModelName);
        Assert.Equal(s.Models[0].Model, s.Model);
        Assert.Equal(8, s.Planner.HeadroomHistory);
        Assert.Equal(new ArbiterSettings(TimeSpan.FromMilliseconds(100), MiB, TimeSpan.FromSeconds(2), 8), s.Arbiter);

        // The bundled configuration of two models loads.
        var file = SettingsLoader.Load([SettingsLoader.ParseFile(Path.Combine(TestModels.RepositoryRoot, "hocon", "two-models.conf"))], NodeModel.Problem,
            TestModels.RepositoryRoot);
        Assert.Equal([("chat", 10), ("batch", 0)], file.Models.Select(m => (m.Name, m.Priority)));

        // Without a list: one model, as before.
        var single = Load("");
        Assert.False(single.ServesSeveralModels);
        Assert.Equal(0, single.Planner.HeadroomHistory);
        Assert.Equal([single.Http.ServedModelName], single.ServedModels.Select(m => m.Name));

        SettingsException Refused(string hocon) => Assert.Throws<SettingsException>(() => Load(hocon));
        Assert.Contains("actorinfer.models[0].colour", Refused("""actorinfer.models = [{ name = "a", model = "opt-125m", colour = "red" }]""").Message);
        Assert.Contains("actorinfer.models[1].name", Refused("""actorinfer.models = [{ name = "a", model = "opt-125m" }, { name = "a", model = "opt-125m" }]""").Message);
        Assert.Contains("actorinfer.models[0].model", Refused("""actorinfer.models = [{ name = "a", model = "opt-7" }]""").Message);
        var notBoolean = Refused("""actorinfer.models = [{ name = "a", model = "opt-125m", static-share = "sometimes" }]""").Message;
        Assert.Contains("actorinfer.models[0].static-share", notBoolean);
        Assert.Contains("'sometimes' is not a boolean", notBoolean);
        Assert.Contains("memory-floor", Refused("""actorinfer.models = [{ name = "a", model = "opt-125m", memory-floor = "2MiB", memory-ceiling = "1MiB" }]""").Message);
        Assert.Contains("actorinfer.model", Refused("""
            actorinfer.models = [{ name = "a", model = "opt-125m" }]
            actorinfer.model = "opt-125m"
            """).Message);
        Assert.Contains("served-model-name", Refused("""
            actorinfer.models = [{ name = "a", model = "opt-125m" }]
            actorinfer.http.served-model-name = "x"
            """).Message);
    }
}
