using ActorInfer.Actors.Memory;
using Akka.Actor;
using Akka.TestKit.Xunit2;
using static ActorInfer.Actors.Memory.MemoryProtocol;

namespace ActorInfer.Actors.Tests;

public sealed class MemoryPressureSpecs() : TestKit(TestModels.ActorConfig)
{
    private static readonly MemoryProtocol.Settings Auto = new(null, null, null, TimeSpan.FromHours(1), 1000);

    private sealed class FixedProbe(long? gpu, long? cpu, long? disk) : IMemoryProbe
    {
        public long? Available(Tier tier) => tier switch { Tier.Gpu => gpu, Tier.Cpu => cpu, _ => disk };
    }

    [Fact]
    public void A_budget_change_is_published_to_every_subscriber()
    {
        var memory = Sys.ActorOf(MemoryProtocol.Props(Auto, null));
        var a = CreateTestProbe();
        var b = CreateTestProbe();
        memory.Tell(new Subscribe(a.Ref));
        memory.Tell(new Subscribe(b.Ref));
        a.ExpectMsg<Subscribed>().Budgets.Should(TierBudgets.None);
        b.ExpectMsg<Subscribed>();

        memory.Tell(new SetBudget(Tier.Gpu, 8L << 30));
        foreach (var p in new[] { a, b })
        {
            var changed = p.ExpectMsg<BudgetChanged>();
            Assert.Equal(new BudgetChanged(Tier.Gpu, 8L << 30, new TierBudgets(8L << 30, 0, 0), "operator"), changed);
        }

        memory.Tell(new Unsubscribe(b.Ref));
        memory.Tell(new SetBudget(Tier.Cpu, 1000));
        a.ExpectMsg<BudgetChanged>(m => m.Tier == Tier.Cpu && m.Budgets == new TierBudgets(8L << 30, 1000, 0));
        b.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }

    [Fact]
    public void A_capped_allocator_makes_the_configured_gpu_budget_the_most_an_operator_can_set()
    {
        var configured = new MemoryProtocol.Settings(12L << 30, 1000, 0, TimeSpan.FromHours(1), 1000) { GpuCeiling = 12L << 30 };
        var memory = Sys.ActorOf(MemoryProtocol.Props(configured, null));
        memory.Tell(new Subscribe(TestActor));
        ExpectMsg<Subscribed>().Budgets.Should(new TierBudgets(12L << 30, 1000, 0));

        // Lower: honoured.
        memory.Tell(new SetBudget(Tier.Gpu, 6L << 30));
        Assert.Equal(6L << 30, ExpectMsg<BudgetChanged>().Bytes);
        // Higher than the allocator allows: the ceiling stands (a change back up from 6 GiB, no further).
        memory.Tell(new SetBudget(Tier.Gpu, 40L << 30));
        var raised = ExpectMsg<BudgetChanged>();
        Assert.Equal(12L << 30, raised.Bytes);
        Assert.Equal("operator", raised.Cause);
        // The other tiers have no ceiling.
        memory.Tell(new SetBudget(Tier.Cpu, 5000));
        Assert.Equal(5000, ExpectMsg<BudgetChanged>().Bytes);
    }

    [Fact]
    public void Without_a_ceiling_an_operator_may_raise_the_gpu_budget_past_its_configuration()
    {
        var memory = Sys.ActorOf(MemoryProtocol.Props(new MemoryProtocol.Settings(12L << 30, 1000, 0, TimeSpan.FromHours(1), 1000), null));
        memory.Tell(new Subscribe(TestActor));
        ExpectMsg<Subscribed>();
        memory.Tell(new SetBudget(Tier.Gpu, 40L << 30));
        Assert.Equal(40L << 30, ExpectMsg<BudgetChanged>().Bytes);
    }

    [Fact]
    public void A_terminated_subscriber_is_dropped_by_death_watch()
    {
        var memory = Sys.ActorOf(MemoryProtocol.Props(Auto, null));
        var dying = CreateTestProbe();
        var living = CreateTestProbe();
        memory.Tell(new Subscribe(dying.Ref));
        memory.Tell(new Subscribe(living.Ref));
        dying.ExpectMsg<Subscribed>();
        living.ExpectMsg<Subscribed>();
        Watch(dying.Ref);
        Sys.Stop(dying.Ref);
        ExpectTerminated(dying.Ref);
        // The memory actor handles Terminated before a later message from this test (one sender, in order) only
        // eventually, so check the effect: publishing goes on to the living subscriber without dead letters piling.
        AwaitAssert(() =>
        {
            memory.Tell(new SetBudget(Tier.Disk, Random.Shared.NextInt64(1, 1L << 40)));
            living.ExpectMsg<BudgetChanged>(TimeSpan.FromSeconds(1));
        }, TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void Telemetry_drives_auto_budgets_operator_overrides_and_clear_returns_to_telemetry()
    {
        var memory = Sys.ActorOf(MemoryProtocol.Props(Auto with { CpuBudget = null }, new FixedProbe(null, 50_000, 90_000)));
        memory.Tell(new Subscribe(TestActor));
        ExpectMsg<Subscribed>().Budgets.Should(new TierBudgets(0, 50_000, 90_000));

        memory.Tell(new TelemetryReading(Tier.Cpu, 50_500)); // under the threshold: noise
        memory.Tell(new TelemetryReading(Tier.Cpu, 40_000));
        ExpectMsg<BudgetChanged>().Should(new BudgetChanged(Tier.Cpu, 40_000, new TierBudgets(0, 40_000, 90_000), "telemetry"));

        memory.Tell(new SetBudget(Tier.Cpu, 10_000));
        ExpectMsg<BudgetChanged>(m => m.Bytes == 10_000 && m.Cause == "operator");
        memory.Tell(new TelemetryReading(Tier.Cpu, 20_000)); // the operator's budget holds
        memory.Tell(new ClearBudget(Tier.Cpu));
        ExpectMsg<BudgetChanged>().Should(new BudgetChanged(Tier.Cpu, 20_000, new TierBudgets(0, 20_000, 90_000), "telemetry"));
    }

    [Fact]
    public void A_configured_budget_holds_against_telemetry()
    {
        var memory = Sys.ActorOf(MemoryProtocol.Props(Auto with { GpuBudget = 4096 }, null));
        memory.Tell(new TelemetryReading(Tier.Gpu, 1_000_000));
        memory.Tell(GetBudgets.Instance);
        ExpectMsg<CurrentBudgets>().Budgets.Should(new TierBudgets(4096, 0, 0));
    }

    [Fact]
    public void Host_probe_reads_MemAvailable()
    {
        var dir = TestModels.TempDir();
        var meminfo = Path.Combine(dir, "meminfo");
        File.WriteAllText(meminfo, "MemTotal:       24000000 kB\nMemFree:        1000 kB\nMemAvailable:   2048 kB\n");
        Assert.Equal(2048L * 1024, new HostMemoryProbe(dir, meminfoPath: meminfo).Available(Tier.Cpu));
        Assert.Null(new HostMemoryProbe(dir).Available(Tier.Gpu));
        Assert.True(new HostMemoryProbe(dir).Available(Tier.Disk) > 0);
    }
}

internal static class AssertExtensions
{
    public static void Should<T>(this T actual, T expected) => Assert.Equal(expected, actual);
}
