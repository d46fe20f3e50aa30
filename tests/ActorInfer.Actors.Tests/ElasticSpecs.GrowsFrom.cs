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
    /// as the block's layers stream them in, their CPU homes kept. A fall mid-block that leaves room for them lets go of
    /// none; a deeper one lets go of what no longer fits, at once: the CPU tier takes no new bytes for them (nothing is
    /// copied), no batch is dropped, and the requests finish with the tokens they have alone. Without budgets nothing can
    /// grow: the raised placement is placed as it is.
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

        // A fall to a budget that still leaves the block room for what grew (the device's budget halves, and three quarters
        // of the weights are raised into it): nothing is let go.
        held = Fall(held, budgetsKnown ? 1L << 29 : null);
        if (budgetsKnown)
        {
            Assert.Equal(grown, offloaded.WeightBytesGrown);
            Assert.Equal(0.5, engine.Placement!.Weights.Gpu, 9);
            // A fall to the firm placement under a budget with room for half the grown bytes beside the block's plan: the
            // rest go back to their CPU homes (the CPU tier takes no new bytes), and the half that fits stays.
            held = Fall(held, offloaded.Runtime.LastPlan!.Total.Of(ActorInfer.Runtime.Tiers.TierKind.Device) + grown / 2, Placed(0.5));
            Assert.InRange(offloaded.WeightBytesGrown, 1, grown / 2);
            Assert.Equal(cpuBefore, tiers.Cpu.BytesHeld);
            Assert.Equal(0.5, engine.Placement!.Weights.Gpu, 9);
        }
        layers[0].Tell(held, scheduler);
        ForwardAll(gate, layers[0]);
        Assert.Equal(Reference(2), Results(2, m => Assert.IsNotType<BatchesDropped>(m)));
        // With budgets no weight was ever copied for a placement (each grew in as its layer streamed, and left for its CPU
        // home); without, the fall's placement copied a quarter of the weights off the device.
        if (budgetsKnown) Assert.Equal(0, offloaded.WeightBytesMoved);
        else Assert.True(offloaded.WeightBytesMoved > movedBefore);
        Sys.Stop(scheduler);
        engine.Dispose();
        owner.Dispose();

        // The fall's policy arrives while the next step's first layer waits; it is honoured with no batch dropped, and the
        // step runs up to the first layer of the step after.
        LayerProtocol.Compute Fall(LayerProtocol.Compute waiting, long? gpuBudget, Policy? firm = null)
        {
            scheduler.Tell(new PlannerProtocol.PolicyChanged(firm is not null
                    ? new BlockPolicy(1, 1, "firm") { Runtime = firm, KeepsRunningBlocks = true }
                    : new BlockPolicy(1, 1, "lower") { Runtime = Placed(0.75), GrowsFrom = Placed(0.5), KeepsRunningBlocks = true },
                gpuBudget is { } b ? new Memory.TierBudgets(b, 1L << 30, 0) : Memory.TierBudgets.None));
            layers[0].Tell(waiting, scheduler);
            var honoured = ExpectMsg<PolicyHonoured>();
            Assert.False(honoured.Dropped, $"{honoured}");
            return gate.ExpectMsg<LayerProtocol.Compute>();
        }
    }
}
