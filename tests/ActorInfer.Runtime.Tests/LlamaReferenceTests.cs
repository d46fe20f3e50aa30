using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using ActorInfer.TestSupport;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

/// <summary>
/// Test-written LLaMA-family models against <see cref="NaiveLlama"/>, a plain loop over heads with rotary applied by
/// hand: the offloading runtime's greedy tokens are the naive ones, its prompt log-probabilities within 1e-4.
/// </summary>
public sealed class LlamaReferenceTests
{
    public static TheoryData<string> Configs => new(["llama", "qwen-like"]);

    [Theory]
    [MemberData(nameof(Configs))]
    public void An_offloaded_llama_agrees_with_the_naive_reference(string which)
    {
        var config = which == "llama" ? TestConfigs.Llama : TestConfigs.QwenLike;
        using var source = new RandomWeights(config, seed: 11);
        var weights = new Dictionary<string, float[]>();
        foreach (var (name, _) in WeightSourceValidation.ExpectedTensors(config))
        {
            using var t = source.Load(name, ScalarType.Float32, CPU);
            weights[name] = t.data<float>().ToArray();
        }
        var naive = new NaiveLlama(config, weights);
        // Prompts long enough that Llama 3.1's scaling changes some frequencies (its original context here is 16).
        var actual = Harness.Sequences(config, 4, maxTokens: 6);
        var folder = Harness.TempFolder();
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, folder, Harness.Generous);
        var policy = new Policy(2, 2, new TierFractions(0.5, 0, 0.5), new TierFractions(0.5, 0.5, 0), TierFractions.AllCpu) { CpuAttention = true };
        using (var copies = new CpuCopyEngine())
        using (var engine = new OffloadRuntime(config, source, policy, tiers, copies, ScalarType.Float32))
            engine.Generate(actual, Harness.Decode);
        Directory.Delete(folder, recursive: true);

        foreach (var s in actual)
        {
            Assert.Equal(naive.Greedy(s.PromptIds, s.OutputIds.Count), s.OutputIds);
            if (s.PromptLogprobs is not { } prompt) continue;
            var logits = naive.Forward(s.PromptIds);
            for (var j = 1; j < s.PromptIds.Count; j++)
                Assert.InRange(prompt[j]!.Value - NaiveOpt.LogSoftmax(logits[j - 1])[s.PromptIds[j]], -1e-4, 1e-4);
        }
        Assert.Contains(actual, s => s.PromptLogprobs is not null);
    }

    [Fact]
    public void Llama3_scaling_divides_long_wavelengths_and_keeps_short_ones()
    {
        var naive = new NaiveLlama(TestConfigs.Llama, new Dictionary<string, float[]>()).Frequencies();
        var rotary = new Model.Layers.Rotary(TestConfigs.Llama.Rope, TestConfigs.Llama.HeadDim, ScalarType.Float32).InverseFrequencies;
        for (var i = 0; i < naive.Length; i++) Assert.InRange(rotary[i] / naive[i], 1 - 1e-6, 1 + 1e-6);
        // Original context 16: wavelengths over 16 are divided by 8, those under 16 / 4 kept, those between blended.
        // The highest frequency, 1 (wavelength 2 pi), is blended: s = (16 / 2 pi - 1) / (4 - 1), f = (1 - s) / 8 + s.
        var s = (16 / (2 * Math.PI) - 1) / 3;
        Assert.Equal((1 - s) / 8 + s, rotary[0], 5);
        // The lowest, 10000^(-14/16) (wavelength about 19,500), is divided by 8.
        Assert.Equal(Math.Pow(10000, -14.0 / 16) / 8, rotary[^1], 9);
    }
}
