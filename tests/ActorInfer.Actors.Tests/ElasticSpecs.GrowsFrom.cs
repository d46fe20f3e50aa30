using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Layers;
using ActorInfer.Actors.Planner;
using ActorInfer.Planning;
using Akka.Actor;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;

namespace ActorInfer.Actors.Tests;

public sealed partial class ElasticSpecs
{
    /// <summary>
    /// A policy raised from a firm one (conservative sizing) places the firm weights, and the ones it raises stay on the device
    /// as the block's layers stream them in, their CPU homes kept; a fall back toward the firm budget mid-block lets go of
    /// them at once: the CPU tier takes no new bytes for them (nothing is copied), no batch is dropped, and the requests
    /// finish with the tokens they have alone. Without budgets nothing can grow: the raised placement is placed as it is.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_policy_raised_from_a_firm_one_grows_its_weights_in_and_a_fall_lets_go_of_them_at_once(bool budgetsKnown)
    {
        var (engine, owner) = OffloadedEngine();
        var offloaded = (OffloadedEngine)engine;
        var tiers = offloaded.Runtime.Tiers;
        Policy Placed(double gpuWeights) =>
            new(1, 1, new TierFractions(gpuWeights, 1 - gpuWeights, 0), TierFractions.AllCpu, new TierFractions(0.5, 0.5, 0)) { CpuAttention = true };
        var budgets = budgetsKnown ? new Memory.TierBudgets(1L << 30, 1L << 30, 0) : Memory.TierBudgets.None;
        var (layers, gate, scheduler) = StartWithLayerZeroHeld(engine,
            new BlockPolicy(1, 1, "raised") { Runtime = Placed(1), GrowsFrom = Placed(0.5), KeepsRunningBlocks = true }, [Item(0), Item(1)], budgets);
        ExpectMsg<BlockStarted>(m => m.Block == 1);
        // The prefill's first layer waits: the firm placement is in force (known budgets), nothing was copied for the raise.
        var held = gate.ExpectMsg<LayerProtocol.Compute>();
        Assert.Equal(budgetsKnown ? 0.5 : 1.0, engine.Placement!.Weights.Gpu, 9);
        Assert.Equal(budgetsKnown ? 0 : 1, Math.Sign(offloaded.WeightBytesMoved));
        var movedBefore = offloaded.WeightBytesMoved;
        layers[0].Tell(held, scheduler);
        // The first decoding step's first layer: the prefill streamed every layer, and the raised weights stayed.
        held = gate.ExpectMsg<LayerProtocol.Compute>();
        var grown = offloaded.WeightBytesGrown;
        Assert.Equal(budgetsKnown ? 1 : 0, Math.Sign(grown));
        var cpuBefore = tiers.Cpu.BytesHeld;

        // A fall to a budget that the firm placement and three quarters of the weights fit (the device's budget halves).
        scheduler.Tell(new PlannerProtocol.PolicyChanged(
            new BlockPolicy(1, 1, "lower") { Runtime = Placed(0.75), GrowsFrom = Placed(0.5), KeepsRunningBlocks = true },
            budgetsKnown ? new Memory.TierBudgets(1L << 29, 1L << 30, 0) : Memory.TierBudgets.None));
        layers[0].Tell(held, scheduler);
        var honoured = ExpectMsg<PolicyHonoured>();
        Assert.False(honoured.Dropped, $"{honoured}");
        // The next step's first layer: the fall let go of the grown weights (to their CPU homes: the CPU tier took no new
        // bytes), and the step grew back only those the lower raise places on the device.
        held = gate.ExpectMsg<LayerProtocol.Compute>();
        if (budgetsKnown)
        {
            Assert.InRange(offloaded.WeightBytesGrown, 1, grown - 1);
            Assert.Equal(cpuBefore, tiers.Cpu.BytesHeld);
            Assert.Equal(0.5, engine.Placement!.Weights.Gpu, 9);
        }
        layers[0].Tell(held, scheduler);
        ForwardAll(gate, layers[0]);
        Assert.Equal(Reference(2), Results(2, m => Assert.IsNotType<BatchesDropped>(m)));
        // With budgets the second block grew toward the lower raise as its layers streamed (no copy of its own); without,
        // the fall's placement moved three quarters of the weights' share off the device by copies.
        if (budgetsKnown)
        {
            Assert.Equal(0, offloaded.WeightBytesMoved);
            Assert.True(offloaded.WeightBytesGrown > 0);
            Assert.True(tiers.Device.PeakBytes <= tiers.Device.BudgetBytes);
        }
        else Assert.True(offloaded.WeightBytesMoved > movedBefore);
        Sys.Stop(scheduler);
        engine.Dispose();
        owner.Dispose();
    }
}
