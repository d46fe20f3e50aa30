using ActorInfer.Model.Generation;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

/// <summary>Weights re-placed between tiers by a new policy, between blocks and inside a running step.</summary>
public sealed class WeightReplacementTests
{
    private static readonly TierFractions Gpu = TierFractions.AllGpu, Cpu = TierFractions.AllCpu;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Weights_move_off_the_device_and_back_with_exact_accounting_and_unchanged_tokens(bool keepHostCopies)
    {
        var config = TestConfigs.PreLn;
        using var source = new RandomWeights(config, seed: 7);
        var expected = Harness.Reference(config, source, 5);
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
        using (var copies = new CpuCopyEngine())
        using (var engine = new OffloadRuntime(config, source, new Policy(2, 3, Gpu, Gpu, Gpu), tiers, copies, ScalarType.Float32, keepHostCopies))
        {
            var weightBytes = engine.WeightPlan.Weights.Device;
            Assert.Equal(weightBytes, tiers.Device.BytesHeld);
            Assert.Equal(keepHostCopies ? weightBytes : 0, tiers.Cpu.BytesHeld);

            // Off the device: the device holds nothing; the CPU holds each weight once, copies or not. With host copies kept
            // nothing is copied: each weight's copy becomes its home.
            var moved = engine.Replace(new Policy(2, 3, Cpu, Gpu, Gpu));
            Assert.Equal(keepHostCopies ? 0 : weightBytes, moved);
            Assert.Equal(0, tiers.Device.BytesHeld);
            Assert.Equal(weightBytes, tiers.Cpu.BytesHeld);

            // A block runs with the weights on the CPU, and a step re-places them back at a layer boundary.
            var actual = Harness.Sequences(config, 5);
            RunWithALayerBoundaryBetween(engine, actual, block => engine.Replace(new Policy(2, 3, Gpu, Gpu, Gpu), block));
            Assert.Equal(expected.Select(s => s.OutputIds), actual.Select(s => s.OutputIds));
            Assert.Equal(weightBytes, tiers.Device.BytesHeld);
            Assert.Equal(keepHostCopies ? weightBytes : 0, tiers.Cpu.BytesHeld);
        }
        Harness.AssertAllFreed(tiers);
    }

    /// <summary>
    /// Weights moving onto the device inside a running step find no room half way (the device's budget fell meanwhile):
    /// the re-placement fails, each weight stays whole where it was or where it went, and the block goes on from its
    /// layer boundary with the tokens it would have had.
    /// </summary>
    [Fact]
    public void A_re_placement_that_finds_no_room_half_way_leaves_the_running_block_able_to_go_on()
    {
        var config = TestConfigs.PreLn;
        using var source = new RandomWeights(config, seed: 7);
        var expected = Harness.Reference(config, source, 5);
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
        using (var copies = new CpuCopyEngine())
        using (var engine = new OffloadRuntime(config, source, new Policy(2, 3, Cpu, Gpu, Gpu), tiers, copies, ScalarType.Float32))
        {
            var actual = Harness.Sequences(config, 5);
            RunWithALayerBoundaryBetween(engine, actual, block =>
            {
                // Room for about half of the weights beside what the device holds now.
                var weightBytes = engine.PlanBlock(new Policy(2, 3, Gpu, Gpu, Gpu), 8, 16).Weights.Device;
                tiers.Device.SetBudget(tiers.Device.BytesHeld + weightBytes / 2);
                Assert.ThrowsAny<Exception>(() => engine.Replace(new Policy(2, 3, Gpu, Gpu, Gpu), block));
                Assert.True(tiers.Device.BytesHeld <= tiers.Device.BudgetBytes);
                tiers.Device.SetBudget(Harness.Generous);
            });
            Assert.Equal(expected.Select(s => s.OutputIds), actual.Select(s => s.OutputIds));
            // Some weights moved before the room ran out; asking for the placement in force before it moves them back.
            Assert.True(tiers.Device.BytesHeld > 0);
            engine.Replace(new Policy(2, 3, Cpu, Gpu, Gpu));
            Assert.Equal(0, tiers.Device.BytesHeld);
        }
        Harness.AssertAllFreed(tiers);
    }

    /// <summary>
    /// Runs a block of <paramref name="sequences"/> to its end, with <paramref name="atBoundary"/> called inside its first
    /// decoding step, at the boundary after the first layer.
    /// </summary>
    private static void RunWithALayerBoundaryBetween(OffloadRuntime engine, IReadOnlyList<SequenceState> sequences, Action<BlockSession> atBoundary)
    {
        using var block = engine.OpenBlock(sequences, Harness.Decode);
        block.RunStep(new TokenStep(0));
        block.Begin(new TokenStep(1), Enumerable.Range(0, block.BatchCount).ToArray());
        for (var b = 0; b < block.BatchCount; b++) block.Run(0, b);
        Assert.True(block.AtLayerBoundary);
        atBoundary(block);
        for (var layer = 1; layer < block.ScheduleLayers; layer++)
            for (var b = 0; b < block.BatchCount; b++) block.Run(layer, b);
        for (var step = 2; sequences.Any(s => !s.IsFinished); step++) block.RunStep(new TokenStep(step));
    }

    /// <summary>
    /// A budget change asks for the weights' placement under a policy several times on its way to being honoured: the
    /// placement of given weight fractions is computed once (whatever the geometry), and it is the one in force again
    /// when the weights come back.
    /// </summary>
    [Fact]
    public void The_placement_of_the_same_weight_fractions_is_computed_once()
    {
        var config = TestConfigs.PreLn;
        using var source = new RandomWeights(config, seed: 7);
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
        using var copies = new CpuCopyEngine();
        using var engine = new OffloadRuntime(config, source, new Policy(2, 3, Gpu, Gpu, Gpu), tiers, copies, ScalarType.Float32, keepHostCopies: true);
        var first = engine.WeightPlan;
        engine.Replace(new Policy(2, 3, Cpu, Gpu, Gpu));
        Assert.NotSame(first, engine.WeightPlan);
        Assert.Equal(0, engine.WeightPlan.Weights.Device);
        engine.Replace(new Policy(4, 1, Gpu, Cpu, Cpu));
        Assert.Same(first, engine.WeightPlan);
        Assert.Equal(first.Weights.Device, tiers.Device.BytesHeld);
        // The same fractions spread over the model are another placement, not the one computed by FlexGen's rule.
        var fractions = new TierFractions(0.3, 0.7, 0);
        engine.Replace(new Policy(2, 3, fractions, Gpu, Gpu));
        var byRule = engine.WeightPlan;
        engine.Replace(new Policy(2, 3, fractions, Gpu, Gpu) { SpreadWeights = true });
        Assert.NotSame(byRule, engine.WeightPlan);
        Assert.Equal(Placement.PlacementPlan.ForWeights(ScheduleLayer.For(config, source), new Policy(1, 1, fractions, Gpu, Gpu) { SpreadWeights = true },
            4, deviceIsCpu: true).Weights, engine.WeightPlan.Weights);
        Assert.Equal(engine.WeightPlan.Weights.Device, tiers.Device.BytesHeld);
    }
}
