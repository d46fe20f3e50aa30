using ActorInfer.Model.Config;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

/// <summary>
/// The host's share of a decoding step, counted rather than timed: the tensors (each one or more native calls) a decoder
/// layer creates per GPU batch. The count is the difference between a model of 2L and one of L layers, divided by L layers
/// times the batches, so the input and output layers drop out.
/// </summary>
public sealed class DecodeStepCostTests(ITestOutputHelper output)
{
    [Fact]
    public void A_decoding_position_of_an_opt_layer_creates_few_tensors()
    {
        var perPosition = TensorsPerDecoderPosition(TestConfigs.PreLn);
        output.WriteLine($"OPT, pre-LN: {perPosition} tensors per (decoder layer, GPU batch) in a decoding step");
        Assert.InRange(perPosition, 1, 20);
    }

    [Fact]
    public void A_decoding_position_of_a_llama_layer_creates_few_tensors()
    {
        var perPosition = TensorsPerDecoderPosition(TestConfigs.Llama);
        output.WriteLine($"Llama (grouped-query, rotary): {perPosition} tensors per (decoder layer, GPU batch) in a decoding step");
        Assert.InRange(perPosition, 1, 60);
    }

    private static double TensorsPerDecoderPosition(ModelConfig config)
    {
        const int layers = 2, batches = 2;
        var few = TensorsInADecodingStep(config with { NumHiddenLayers = layers }, batches);
        var many = TensorsInADecodingStep(config with { NumHiddenLayers = 2 * layers }, batches);
        Assert.NotNull(few);
        Assert.NotNull(many);
        return (double)(many.Value - few.Value) / (layers * batches);
    }

    /// <summary>Tensors created on this thread by the third decoding step (the first two build what a block keeps).</summary>
    private static long? TensorsInADecodingStep(ModelConfig config, int batches)
    {
        using var source = new RandomWeights(config, seed: 3);
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
        using var copies = new CpuCopyEngine();
        var policy = new Policy(2, batches, TierFractions.AllGpu, TierFractions.AllGpu, TierFractions.AllGpu) { CpuAttention = false };
        using var engine = new OffloadRuntime(config, source, policy, tiers, copies, ScalarType.Float32);
        var sequences = Harness.Sequences(config, 2 * batches, maxTokens: 6);
        long? before = null, after = null;
        engine.Generate(sequences, Harness.Decode, step =>
        {
            if (step.Value == 2) before = Harness.CreatedTensors();
            if (step.Value == 3) after = Harness.CreatedTensors();
        });
        return after - before;
    }
}
