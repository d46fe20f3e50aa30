using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Layers;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

/// <summary>
/// The decoding path that CUDA graphs capture (<c>cuda-graphs</c>), run uncaptured on the CPU: one piece of work a layer,
/// the step's keys and values written at an index held in a tensor, attention over the engine's length (for a fused
/// kernel rounded up to 64, under a mask), the layer's output written into one of two alternating buffers. Layers it does
/// not take run as before.
/// </summary>
public sealed class DecodeGraphsTests
{
    private static readonly TierFractions Gpu = TierFractions.AllGpu, Cpu = TierFractions.AllCpu;

    public static TheoryData<string, int, int, int> Geometries() => new()
    {
        { "1x1", 1, 1, 1 },
        { "2x3, padded prompts", 2, 3, 5 },
        { "4x2, a short last batch", 4, 2, 7 },
    };

    /// <summary>
    /// With batched products the outputs are those of the engine without graphs, bit for bit; with a fused kernel (a rounded
    /// length under a mask) the reference's tokens.
    /// </summary>
    [Theory]
    [MemberData(nameof(Geometries))]
    public void Decoding_through_the_graph_path_is_the_plain_path_bit_for_bit(string name, int batchSize, int batches, int count)
    {
        var config = TestConfigs.PreLn;
        using var source = new RandomWeights(config, seed: 7);
        List<SequenceState> Run(bool graphs)
        {
            var sequences = Harness.Sequences(config, count);
            var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
            using var copies = new CpuCopyEngine();
            using var engine = new OffloadRuntime(config, source, new Policy(batchSize, batches, Gpu, Gpu, Gpu), tiers, copies, ScalarType.Float32,
                cudaGraphs: graphs);
            engine.Generate(sequences, Harness.Decode);
            // One piece of work a layer, each decoding step after the prefill's token, in every batch.
            if (graphs) Assert.Equal((count + batchSize - 1) / batchSize * 4 * config.NumHiddenLayers, engine.Graphs!.Uncaptured);
            return sequences;
        }
        var plain = Run(graphs: false);
        var graphed = Run(graphs: true);
        Assert.Equal(plain.Select(s => s.OutputIds), graphed.Select(s => s.OutputIds));
        Assert.Equal(plain.Select(s => s.OutputLogprobs), graphed.Select(s => s.OutputLogprobs));
        _ = name;
    }

    [Theory]
    [MemberData(nameof(Geometries))]
    public void Decoding_through_one_graph_a_layer_gives_the_reference_tokens(string name, int batchSize, int batches, int count)
    {
        var config = TestConfigs.PreLn;
        using var source = new RandomWeights(config, seed: 7);
        var expected = Harness.Reference(config, source, count);
        var actual = Harness.Sequences(config, count);
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
        var liveBefore = Harness.LiveTensors();
        using (var copies = new CpuCopyEngine())
        using (var engine = new OffloadRuntime(config, source, new Policy(batchSize, batches, Gpu, Gpu, Gpu), tiers, copies, ScalarType.Float32,
                   decodeAttention: DecodeAttention.Efficient, cudaGraphs: true))
        {
            engine.Generate(actual, Harness.Decode);
            var graphs = engine.Graphs!;
            // Every decoding layer of every batch went through it: 4 tokens after the prefill's, 2 layers.
            var batchesRun = (count + batchSize - 1) / batchSize;
            Assert.Equal(batchesRun * 4 * config.NumHiddenLayers, graphs.Uncaptured);
            Assert.Equal(0, graphs.Captures);
        }
        Harness.AssertAllFreed(tiers);
        if (liveBefore is { } before) Assert.Equal(before, Harness.LiveTensors());
        Assert.Equal(expected.Select(s => s.OutputIds), actual.Select(s => s.OutputIds));
        for (var i = 0; i < count; i++)
            for (var t = 0; t < expected[i].OutputLogprobs.Count; t++)
                Assert.InRange(actual[i].OutputLogprobs[t] - expected[i].OutputLogprobs[t], -1e-5, 1e-5);
        _ = name;
    }

    /// <summary>A generation that crosses a multiple of 64 attends over a longer rounded length from then on, under a new mask.</summary>
    [Fact]
    public void A_generation_past_64_tokens_gives_the_reference_tokens() =>
        Harness.AssertLongAndShortAsAlone(TestConfigs.PreLn, 50, 30, 30, new Policy(2, 1, Gpu, Gpu, Gpu), DecodeAttention.Efficient, cudaGraphs: true,
            check: engine => Assert.Equal(29 * TestConfigs.PreLn.NumHiddenLayers, engine.Graphs!.Uncaptured));

    /// <summary>
    /// Layers the graphs do not take run as before: a cache or hidden state off the device, or rotary positions (angles
    /// per step).
    /// </summary>
    [Fact]
    public void Layers_off_the_device_or_with_rotary_positions_are_left_to_the_plain_path()
    {
        foreach (var (config, policy) in new (ModelConfig, Policy)[]
                 {
                     (TestConfigs.PreLn, new Policy(2, 2, Gpu, Cpu, Gpu)),
                     (TestConfigs.PreLn, new Policy(2, 2, Gpu, Gpu, Cpu)),
                     (TestConfigs.PreLn, new Policy(2, 2, Gpu, Cpu, Gpu) { CpuAttention = true }),
                     (TestConfigs.Llama, new Policy(2, 2, Gpu, Gpu, Gpu)),
                 })
        {
            using var source = new RandomWeights(config, seed: 7);
            var expected = Harness.Reference(config, source, 4);
            var actual = Harness.Sequences(config, 4);
            var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
            using var copies = new CpuCopyEngine();
            using var engine = new OffloadRuntime(config, source, policy, tiers, copies, ScalarType.Float32, cudaGraphs: true);
            engine.Generate(actual, Harness.Decode);
            Assert.Equal(0, engine.Graphs!.Uncaptured);
            Assert.Equal(expected.Select(s => s.OutputIds), actual.Select(s => s.OutputIds));
        }
    }
}
