using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

/// <summary>
/// A decoder layer (decoding, or a prefill into a device cache) stops at a yield point while a budget change is on its
/// way (<see cref="ChangeSignal"/>), keeps nothing, and runs again from its start: with weights re-placed in between or
/// not, the tokens are unchanged.
/// </summary>
public sealed class LayerYieldTests
{
    private static readonly TierFractions Gpu = TierFractions.AllGpu;

    [Theory]
    [InlineData(false, 100)]
    [InlineData(false, 50)]
    [InlineData(true, 100)]
    public void A_decoder_layer_stops_for_a_change_and_runs_again_with_the_same_tokens(bool replaceWhileStopped, int weightsOnDevice)
    {
        var config = TestConfigs.PreLn;
        using var source = new RandomWeights(config, seed: 11);
        const int sequences = 3, maxTokens = 5;
        var expected = Harness.Reference(config, source, sequences, maxTokens);
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
        var half = TierFractions.FromPercent(50, 50);
        var weights = TierFractions.FromPercent(weightsOnDevice, 100 - weightsOnDevice);
        using (var copies = new CpuCopyEngine())
        using (var engine = new OffloadRuntime(config, source, new Policy(sequences, 1, weights, Gpu, Gpu), tiers, copies, ScalarType.Float32, keepHostCopies: true))
        {
            var actual = Harness.Sequences(config, sequences, maxTokens);
            var decoderRuns = 0;
            using (var block = engine.OpenBlock(actual, Harness.Decode))
            {
                Assert.Equal(1, block.BatchCount);
                engine.Changes.Sent();
                // A prefill into a device cache stops as well: writing the whole prompt's keys and values again writes the same.
                for (var step = 0; actual.Any(s => !s.IsFinished); step++)
                {
                    block.Begin(new TokenStep(step), [0]);
                    for (var layer = 0; layer < block.ScheduleLayers; layer++)
                    {
                        var decoder = layer > 0 && layer < block.ScheduleLayers - 1;
                        if (!decoder)
                        {
                            Assert.True(block.Run(layer, 0, mayYield: true));
                            continue;
                        }
                        Assert.False(block.Run(layer, 0, mayYield: true));
                        // The position stays where it was: at a layer boundary, where weights may move.
                        Assert.True(block.AtLayerBoundary);
                        if (replaceWhileStopped)
                            engine.Replace(new Policy(sequences, 1, decoderRuns % 2 == 0 ? half : Gpu, Gpu, Gpu), block);
                        Assert.True(block.Run(layer, 0));
                        decoderRuns++;
                    }
                }
                engine.Changes.Received();
                Assert.False(engine.Changes.Waiting);
            }
            Assert.Equal(expected.Select(s => s.OutputIds), actual.Select(s => s.OutputIds));
            Assert.Equal(decoderRuns, engine.Changes.Yields);
            Assert.Equal(maxTokens * config.NumHiddenLayers, decoderRuns);
        }
        Harness.AssertAllFreed(tiers);
    }

    /// <summary>A cache whose home is the CPU is stored from the prefill and attended from a copy: no layer stops for a change.</summary>
    [Fact]
    public void No_layer_stops_when_the_cache_lives_on_the_cpu()
    {
        var config = TestConfigs.PreLn;
        using var source = new RandomWeights(config, seed: 11);
        var expected = Harness.Reference(config, source, 3);
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
        using (var copies = new CpuCopyEngine())
        using (var engine = new OffloadRuntime(config, source, new Policy(3, 1, Gpu, TierFractions.FromPercent(0, 100), Gpu) { CpuAttention = false },
                   tiers, copies, ScalarType.Float32))
        {
            var actual = Harness.Sequences(config, 3);
            using (var block = engine.OpenBlock(actual, Harness.Decode))
            {
                engine.Changes.Sent();
                for (var step = 0; actual.Any(s => !s.IsFinished); step++)
                {
                    block.Begin(new TokenStep(step), [0]);
                    for (var layer = 0; layer < block.ScheduleLayers; layer++) Assert.True(block.Run(layer, 0, mayYield: true));
                }
            }
            Assert.Equal(expected.Select(s => s.OutputIds), actual.Select(s => s.OutputIds));
            Assert.Equal(0, engine.Changes.Yields);
        }
        Harness.AssertAllFreed(tiers);
    }

    /// <summary>A step of two GPU batches does not stop (the next batch's inputs are loaded while one computes).</summary>
    [Fact]
    public void A_step_of_two_batches_does_not_stop()
    {
        var config = TestConfigs.PreLn;
        using var source = new RandomWeights(config, seed: 11);
        var expected = Harness.Reference(config, source, 4);
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
        using (var copies = new CpuCopyEngine())
        using (var engine = new OffloadRuntime(config, source, new Policy(2, 2, Gpu, Gpu, Gpu), tiers, copies, ScalarType.Float32))
        {
            var actual = Harness.Sequences(config, 4);
            using (var block = engine.OpenBlock(actual, Harness.Decode))
            {
                engine.Changes.Sent();
                for (var step = 0; actual.Any(s => !s.IsFinished); step++)
                {
                    block.Begin(new TokenStep(step), [0, 1]);
                    for (var layer = 0; layer < block.ScheduleLayers; layer++)
                        for (var b = 0; b < 2; b++) Assert.True(block.Run(layer, b, mayYield: true));
                }
            }
            Assert.Equal(expected.Select(s => s.OutputIds), actual.Select(s => s.OutputIds));
            Assert.Equal(0, engine.Changes.Yields);
        }
        Harness.AssertAllFreed(tiers);
    }

    /// <summary>
    /// In the output head a batch whose head has run may leave the step (a budget change between two batches' heads
    /// drops from the end until the block fits): the cursor stays on the next batch to run, and the batches left
    /// generate what they would have alone.
    /// </summary>
    [Fact]
    public void A_batch_whose_head_has_run_leaves_the_step_and_the_rest_go_on()
    {
        var config = TestConfigs.PreLn;
        using var source = new RandomWeights(config, seed: 11);
        var expected = Harness.Reference(config, source, 3);
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
        using (var copies = new CpuCopyEngine())
        using (var engine = new OffloadRuntime(config, source, new Policy(1, 3, Gpu, Gpu, Gpu), tiers, copies, ScalarType.Float32))
        {
            var actual = Harness.Sequences(config, 3);
            using (var block = engine.OpenBlock(actual, Harness.Decode))
            {
                int[] active = [0, 1, 2];
                for (var step = 0; actual.Where((_, i) => active.Contains(i)).Any(s => !s.IsFinished); step++)
                {
                    block.Begin(new TokenStep(step), active);
                    for (var layer = 0; layer < block.ScheduleLayers; layer++)
                        foreach (var b in active.ToArray())
                        {
                            Assert.True(block.Run(layer, b));
                            // In the first decoding step's head, batch 1 leaves once its own head and batch 0's have run.
                            if (step == 1 && layer == block.ScheduleLayers - 1 && b == 1)
                            {
                                Assert.False(block.AtLayerBoundary);
                                block.DropNow(1);
                                Assert.True(block.InStep);
                                active = [0, 2];
                            }
                        }
                }
            }
            Assert.Equal(expected[0].OutputIds, actual[0].OutputIds);
            Assert.Equal(expected[2].OutputIds, actual[2].OutputIds);
            // The batch that left has the tokens of its steps before it left, and no more.
            Assert.Equal(expected[1].OutputIds.Take(2), actual[1].OutputIds);
        }
        Harness.AssertAllFreed(tiers);
    }
}
