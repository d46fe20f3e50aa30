using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Tiers;
using ActorInfer.Runtime.Tiers;
using Akka.Actor;
using Akka.TestKit.Xunit2;
using static TorchSharp.torch;
using Tier = ActorInfer.Actors.Memory.Tier;

namespace ActorInfer.Actors.Tests;

/// <summary>The offload-tier actors apply the memory-pressure actor's budgets to their tiers and report what they hold.</summary>
public sealed class TierSpecs() : TestKit(TestModels.ActorConfig)
{
    private static readonly MemoryProtocol.Settings Budgets = new(GpuBudget: 4_000_000, CpuBudget: 8_000_000, DiskBudget: null,
        TelemetryInterval: TimeSpan.FromHours(1), TelemetryChangeThreshold: 1);

    [Fact]
    public void A_budget_change_reaches_the_tier_and_new_buffers_are_checked_against_it()
    {
        var device = MemoryTier.ForDevice(long.MaxValue);
        var memory = Sys.ActorOf(MemoryProtocol.Props(Budgets, null));
        var tier = Sys.ActorOf(TierProtocol.Props(Tier.Gpu, device, memory));

        AwaitAssert(() => Assert.Equal(4_000_000, device.BudgetBytes), TimeSpan.FromSeconds(5));
        using var buffer = device.Allocate([250_000], ScalarType.Float32, "a test buffer");
        tier.Tell(TierProtocol.GetState.Instance);
        ExpectMsg<TierProtocol.TierState>().Should(new TierProtocol.TierState(Tier.Gpu, 4_000_000, 1_000_000, 1_000_000, 1));

        memory.Tell(new MemoryProtocol.SetBudget(Tier.Gpu, 1_500_000));
        AwaitAssert(() => Assert.Equal(1_500_000, device.BudgetBytes), TimeSpan.FromSeconds(5));
        var refused = Assert.Throws<TierBudgetExceededException>(() => device.Allocate([250_000], ScalarType.Float32, "one too many"));
        Assert.Equal(2_000_000, refused.BytesNeeded);

        // Another tier's change leaves this one alone.
        memory.Tell(new MemoryProtocol.SetBudget(Tier.Cpu, 3_000_000));
        memory.Tell(MemoryProtocol.GetBudgets.Instance);
        ExpectMsg<MemoryProtocol.CurrentBudgets>();
        tier.Tell(TierProtocol.GetState.Instance);
        Assert.Equal(1_500_000, ExpectMsg<TierProtocol.TierState>().BudgetBytes);
    }
}
