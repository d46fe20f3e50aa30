using ActorInfer.Model.Generation;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

/// <summary>
/// Weights that move onto the device while a block runs, as its layers copy them in anyway (a rise the running block
/// leaves to its end): the copies stay as homes, within an allowance and the device's room, and leave again at once.
/// </summary>
public sealed class WeightGrowthTests
{
    private static readonly Policy OnCpu = new(2, 3, TierFractions.AllCpu, TierFractions.AllGpu, TierFractions.AllGpu),
        OnDevice = new(2, 3, TierFractions.AllGpu, TierFractions.AllGpu, TierFractions.AllGpu);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Streamed_weights_stay_on_the_device_and_the_tokens_are_unchanged(bool keepHostCopies) =>
        WithABlock(keepHostCopies, (engine, tiers, block, sequences, weightBytes) =>
        {
            var cpuBefore = tiers.Cpu.BytesHeld;
            engine.GrowTowards(OnDevice, Harness.Generous);
            block.RunStep(new TokenStep(1));
            // One step streamed every layer in: each weight's copy is now its home, its CPU home its host copy.
            Assert.Equal(weightBytes, engine.GrownBytes);
            Assert.Equal(cpuBefore, tiers.Cpu.BytesHeld);
            RunToTheEnd(block, sequences, 2);
        }, (engine, tiers, weightBytes) =>
        {
            Assert.Equal(weightBytes, tiers.Device.BytesHeld);
            // Settling on the placement grown toward copies nothing, and lets go of the host copies a store without them
            // had not planned for.
            Assert.Equal(0, engine.Replace(OnDevice));
            Assert.Equal(0, engine.GrownBytes);
            Assert.Equal(weightBytes, tiers.Device.BytesHeld);
            Assert.Equal(keepHostCopies ? weightBytes : 0, tiers.Cpu.BytesHeld);
        });

    /// <summary>Under the placement in force again (a fall), the grown weights leave the device for their host copies.</summary>
    [Fact]
    public void A_fall_sends_the_grown_weights_back_to_their_host_copies() =>
        WithABlock(false, (engine, tiers, block, sequences, weightBytes) =>
        {
            var deviceBefore = tiers.Device.BytesHeld;
            var cpuBefore = tiers.Cpu.BytesHeld;
            GrowAllAndStopInStepTwo(engine, block, weightBytes);
            // Inside the next step, at a layer boundary: the placement in force again, the grown weights leave.
            engine.Replace(OnCpu, block);
            Assert.Equal(0, engine.GrownBytes);
            Assert.Equal(cpuBefore, tiers.Cpu.BytesHeld);
            FinishStepTwoAndTheBlock(block, sequences);
            Assert.Equal(deviceBefore, tiers.Device.BytesHeld);
        }, (_, tiers, _) => Assert.Equal(0, tiers.Device.BytesHeld));

    /// <summary>
    /// A smaller allowance inside a step, at a layer boundary: grown weights go back to their host copies from the last layer
    /// down until what is left is within it (nothing copied, the CPU tier unchanged), the rest stay, and the tokens are the
    /// reference's.
    /// </summary>
    [Fact]
    public void Trimming_lets_go_of_grown_weights_down_to_the_allowance_and_keeps_the_rest() =>
        WithABlock(false, (engine, tiers, block, sequences, weightBytes) =>
        {
            var cpuBefore = tiers.Cpu.BytesHeld;
            GrowAllAndStopInStepTwo(engine, block, weightBytes);
            var deviceGrown = tiers.Device.BytesHeld;
            var released = engine.TrimGrowth(weightBytes / 2, block);
            Assert.InRange(engine.GrownBytes, 1, weightBytes / 2);
            Assert.Equal(weightBytes - engine.GrownBytes, released);
            Assert.Equal(cpuBefore, tiers.Cpu.BytesHeld);
            Assert.Equal(deviceGrown - released, tiers.Device.BytesHeld);
            // Within the allowance already: nothing more goes.
            Assert.Equal(0, engine.TrimGrowth(weightBytes / 2, block));
            FinishStepTwoAndTheBlock(block, sequences);
        }, (_, _, _) => { });

    /// <summary>
    /// The weights grow no further than the allowance, nor into the room the device keeps for another layer's copies: the
    /// tier never refuses the block's next copy, and the block ends with the tokens it would have had.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Growth_stops_at_the_allowance_and_at_the_device_s_room(bool byAllowance) =>
        WithABlock(false, (engine, tiers, block, sequences, weightBytes) =>
        {
            var limit = weightBytes / 2;
            if (!byAllowance) tiers.Device.SetBudget(tiers.Device.PeakBytes + limit);
            engine.GrowTowards(OnDevice, byAllowance ? limit : Harness.Generous);
            for (var step = 1; sequences.Any(s => !s.IsFinished); step++)
            {
                block.RunStep(new TokenStep(step));
                // By the device's room: not every weight, since the room left beside them is kept for a layer's copies.
                Assert.InRange(engine.GrownBytes, 1, byAllowance ? limit : weightBytes - 1);
            }
            Assert.True(tiers.Device.PeakBytes <= tiers.Device.BudgetBytes);
        }, (_, _, _) => { });

    /// <summary>
    /// Weights grown in one block stay as homes for the next where its plan leaves room for them beside it, and leave for
    /// their host copies as it opens where it does not (the tier would refuse its buffers): either way nothing is copied
    /// and its tokens are the reference's.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Grown_weights_stay_for_the_next_block_only_where_it_has_room_for_them(bool room)
    {
        var config = TestConfigs.PreLn;
        using var source = new RandomWeights(config, seed: 7);
        var expected = Harness.Reference(config, source, 5);
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
        using (var copies = new CpuCopyEngine())
        using (var engine = new OffloadRuntime(config, source, OnCpu, tiers, copies, ScalarType.Float32))
        {
            var weightBytes = engine.PlanBlock(OnDevice, 8, 16).Weights.Device;
            var first = Harness.Sequences(config, 5);
            engine.GrowTowards(OnDevice, Harness.Generous);
            using (var block = engine.OpenBlock(first, Harness.Decode))
                RunToTheEnd(block, first, 0);
            Assert.Equal(weightBytes, engine.GrownBytes);
            var cpu = tiers.Cpu.BytesHeld;
            // The next block's plan (its cache and buffers on the device) beside the grown weights: within the budget, or
            // a byte over it.
            var second = Harness.Sequences(config, 5);
            var need = engine.Plan(second).Total.Of(TierKind.Device);
            tiers.Device.SetBudget(need + weightBytes - (room ? 0 : 1));
            using (var block = engine.OpenBlock(second, Harness.Decode))
            {
                Assert.Equal(room ? weightBytes : 0, engine.GrownBytes);
                RunToTheEnd(block, second, 0);
            }
            Assert.Equal(expected.Select(s => s.OutputIds), first.Select(s => s.OutputIds));
            Assert.Equal(expected.Select(s => s.OutputIds), second.Select(s => s.OutputIds));
            Assert.True(tiers.Cpu.BytesHeld <= cpu);
        }
        Harness.AssertAllFreed(tiers);
    }

    /// <summary>
    /// A runtime with every weight on the CPU runs a block's prefill, then <paramref name="during"/> (given the block, its
    /// sequences and the bytes of every weight on the device), which runs it to its end; the tokens are checked against
    /// the reference, then <paramref name="after"/> runs with the block closed, and every tier is checked freed.
    /// </summary>
    private static void WithABlock(bool keepHostCopies, Action<OffloadRuntime, TierSet, BlockSession, List<SequenceState>, long> during,
        Action<OffloadRuntime, TierSet, long> after)
    {
        var config = TestConfigs.PreLn;
        using var source = new RandomWeights(config, seed: 7);
        var expected = Harness.Reference(config, source, 5);
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
        using (var copies = new CpuCopyEngine())
        using (var engine = new OffloadRuntime(config, source, OnCpu, tiers, copies, ScalarType.Float32, keepHostCopies))
        {
            var weightBytes = engine.PlanBlock(OnDevice, 8, 16).Weights.Device;
            Assert.Equal(0, engine.WeightPlan.Weights.Device);
            var sequences = Harness.Sequences(config, 5);
            using (var block = engine.OpenBlock(sequences, Harness.Decode))
            {
                block.RunStep(new TokenStep(0));
                during(engine, tiers, block, sequences, weightBytes);
            }
            Assert.Equal(expected.Select(s => s.OutputIds), sequences.Select(s => s.OutputIds));
            after(engine, tiers, weightBytes);
        }
        Harness.AssertAllFreed(tiers);
    }

    /// <summary>Every weight grows in during step 1; step 2 then stops at its first layer boundary (its layer 0 run).</summary>
    private static void GrowAllAndStopInStepTwo(OffloadRuntime engine, BlockSession block, long weightBytes)
    {
        engine.GrowTowards(OnDevice, Harness.Generous);
        block.RunStep(new TokenStep(1));
        Assert.Equal(weightBytes, engine.GrownBytes);
        block.Begin(new TokenStep(2), Enumerable.Range(0, block.BatchCount).ToArray());
        for (var b = 0; b < block.BatchCount; b++) block.Run(0, b);
    }

    private static void FinishStepTwoAndTheBlock(BlockSession block, List<SequenceState> sequences)
    {
        for (var layer = 1; layer < block.ScheduleLayers; layer++)
            for (var b = 0; b < block.BatchCount; b++) block.Run(layer, b);
        RunToTheEnd(block, sequences, 3);
    }

    private static void RunToTheEnd(BlockSession block, List<SequenceState> sequences, int fromStep)
    {
        for (var step = fromStep; sequences.Any(s => !s.IsFinished); step++) block.RunStep(new TokenStep(step));
    }
}
