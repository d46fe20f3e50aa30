using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

/// <summary>Every placement and block geometry reproduces the all-on-device reference token for token.</summary>
public sealed class PlacementEquivalenceTests
{
    private static readonly TierFractions Gpu = TierFractions.AllGpu, Cpu = TierFractions.AllCpu, Disk = TierFractions.AllDisk;
    private static readonly TierFractions Half = new(0.5, 0.5, 0), HalfDisk = new(0.5, 0, 0.5), Thirds = new(1 / 3.0, 1 / 3.0, 1 / 3.0);

    public static TheoryData<string, int, int, int, TierFractions, TierFractions, TierFractions, bool> Placements() => new()
    {
        { "all device 1x1", 1, 1, 1, Gpu, Gpu, Gpu, false },
        { "all device 2x3", 2, 3, 5, Gpu, Gpu, Gpu, false },
        { "weights cpu 4x2", 4, 2, 7, Cpu, Gpu, Gpu, false },
        { "weights disk 2x3", 2, 3, 6, Disk, Gpu, Gpu, false },
        { "cache cpu, cpu attention 2x3", 2, 3, 5, Gpu, Cpu, Gpu, true },
        { "cache cpu, device attention 2x3", 2, 3, 5, Gpu, Cpu, Gpu, false },
        { "cache disk 4x2", 4, 2, 8, Gpu, Disk, Gpu, false },
        { "cache disk, cpu attention 1x1", 1, 1, 1, Gpu, Disk, Gpu, true },
        { "activations cpu 2x3", 2, 3, 5, Gpu, Gpu, Cpu, false },
        { "activations disk 1x1", 1, 1, 1, Gpu, Gpu, Disk, false },
        { "halves 4x2", 4, 2, 7, Half, Half, Half, true },
        { "halves with disk 2x3", 2, 3, 6, HalfDisk, HalfDisk, HalfDisk, false },
        { "thirds everywhere 2x3", 2, 3, 5, Thirds, Thirds, Thirds, true },
    };

    [Theory]
    [MemberData(nameof(Placements))]
    public void GreedyTokensAndPromptLogprobsMatchTheReference(string name, int batchSize, int batches, int sequences,
        TierFractions weights, TierFractions cache, TierFractions activations, bool cpuAttention)
    {
        var policy = new Policy(batchSize, batches, weights, cache, activations) { CpuAttention = cpuAttention };
        Check(TestConfigs.PreLn, policy, sequences, name);
    }

    /// <summary>A Llama with grouped-query attention and an explicit head_dim, under every placement.</summary>
    [Theory]
    [MemberData(nameof(Placements))]
    public void A_llama_with_grouped_query_attention_matches_the_reference(string name, int batchSize, int batches, int sequences,
        TierFractions weights, TierFractions cache, TierFractions activations, bool cpuAttention)
    {
        var policy = new Policy(batchSize, batches, weights, cache, activations) { CpuAttention = cpuAttention };
        Check(TestConfigs.Llama, policy, sequences, name);
    }

    /// <summary>Weights spread over the model (layers placed differently, some with Q, K and V apart) give the reference's tokens.</summary>
    [Theory]
    [InlineData(0.2, 0.8, 0.0)]
    [InlineData(0.45, 0.3, 0.25)]
    public void Weights_spread_over_the_model_match_the_reference(double gpu, double cpu, double disk)
    {
        var weights = new TierFractions(gpu, cpu, disk);
        using (var source = new RandomWeights(TestConfigs.PreLn, seed: 7))
        {
            // Not vacuous: the decoder layers are placed differently.
            var layers = ScheduleLayer.For(TestConfigs.PreLn, source);
            var plan = Placement.PlacementPlan.ForWeights(layers, new Policy(1, 1, weights, Gpu, Gpu) { SpreadWeights = true }, 4, deviceIsCpu: false);
            var decoders = layers.Select((l, j) => (l, j)).Where(x => x.l.Kind == ScheduleLayerKind.Decoder).Select(x => string.Join(",", plan.WeightTiers[x.j]));
            Assert.True(decoders.Distinct().Count() > 1, $"every decoder layer placed alike at {weights}");
        }
        Check(TestConfigs.PreLn, new Policy(2, 3, weights, Half, Half) { CpuAttention = true, SpreadWeights = true }, 5, $"spread {weights}");
        Check(TestConfigs.Llama, new Policy(2, 2, weights, Gpu, Cpu) { CpuAttention = false, SpreadWeights = true }, 4, $"llama spread {weights}");
    }

    [Fact]
    public void A_qwen_like_model_with_qkv_biases_and_a_tied_head_matches_the_reference_offloaded()
    {
        var policy = new Policy(2, 2, Thirds, Half, HalfDisk) { CpuAttention = true };
        Check(TestConfigs.QwenLike, policy, 4, "qwen-like thirds");
    }

    [Fact]
    public void A_llama_with_a_compressed_cache_matches_the_compressed_reference()
    {
        var policy = new Policy(2, 3, Thirds, Thirds, Half) { CpuAttention = true, CompressCache = true };
        Check(TestConfigs.Llama, policy, 5, "llama compressed thirds");
    }

    public static TheoryData<string, int, int, int, TierFractions, TierFractions, bool> CompressedPlacements() => new()
    {
        { "compressed, all device 2x3", 2, 3, 5, Gpu, Gpu, false },
        { "compressed, cache cpu, device attention 2x3", 2, 3, 5, Cpu, Cpu, false },
        { "compressed, cache cpu, cpu attention 4x2", 4, 2, 7, Gpu, Cpu, true },
        { "compressed, cache disk 1x1", 1, 1, 1, Gpu, Disk, false },
        { "compressed, thirds, cpu attention 2x3", 2, 3, 6, Thirds, Thirds, true },
        { "compressed, halves with disk 4x2", 4, 2, 7, HalfDisk, HalfDisk, false },
    };

    /// <summary>A 4-bit compressed cache, wherever it lives, gives what the reference with a compressed cache gives.</summary>
    [Theory]
    [MemberData(nameof(CompressedPlacements))]
    public void A_compressed_cache_matches_the_compressed_reference(string name, int batchSize, int batches, int sequences,
        TierFractions weights, TierFractions cache, bool cpuAttention)
    {
        var policy = new Policy(batchSize, batches, weights, cache, Half) { CpuAttention = cpuAttention, CompressCache = true };
        Check(TestConfigs.PreLn, policy, sequences, name);
    }

    /// <summary>OPT with heads of 64 (groups of 64 within them) and a Llama whose two key/value heads of 64 serve four query heads.</summary>
    private static readonly ModelConfig OptHeadsOf64 = TestConfigs.PreLn with { Name = "test-pre-ln-64", HiddenSize = 128, NumAttentionHeads = 2, WordEmbedProjDim = 128 };
    private static readonly ModelConfig LlamaHeadsOf64 = TestConfigs.Llama with { Name = "test-llama-64", NumAttentionHeads = 4, KeyValueHeads = 2, ExplicitHeadDim = 64 };

    public static TheoryData<string, int, int, int, TierFractions, TierFractions> CodePlacements() => new()
    {
        { "cache cpu 4x2", 4, 2, 7, Gpu, Cpu },
        { "cache disk 2x2", 2, 2, 4, Half, Disk },
        { "thirds 2x3", 2, 3, 6, Thirds, Thirds },
    };

    /// <summary>
    /// A compressed cache attended on the CPU from its codes (heads the kernel takes, with AVX-512), in memory or staged from
    /// disk, gives what the reference with a compressed cache gives.
    /// </summary>
    [Theory]
    [MemberData(nameof(CodePlacements))]
    public void A_compressed_cache_attended_from_its_codes_matches_the_compressed_reference(string name, int batchSize, int batches, int sequences,
        TierFractions weights, TierFractions cache)
    {
        Assert.Equal(System.Runtime.Intrinsics.X86.Avx512F.IsSupported, Model.Layers.InvariantAttention.AttendsCodes(64, 128));
        var policy = new Policy(batchSize, batches, weights, cache, Half) { CpuAttention = true, CompressCache = true };
        Check(OptHeadsOf64, policy, sequences, $"opt {name}");
        Check(LlamaHeadsOf64, policy, sequences, $"llama {name}");
    }

    /// <summary>A prompt stored in several compressed chunks gives what one chunk gives.</summary>
    [Fact]
    public void A_long_prompt_compressed_in_chunks_matches_the_compressed_reference()
    {
        var config = TestConfigs.PreLn;
        using var source = new RandomWeights(config, seed: 7);
        SequenceState[] Make() => [.. new[] { 45, 30, 12 }.Select((length, i) =>
        {
            int[] prompt = [.. Enumerable.Range(0, length).Select(j => 4 + (i * 13 + j * 11) % (config.VocabSize - 4))];
            return new SequenceState(new CompletionRequest { Prompt = Prompt.FromIds(prompt), MaxTokens = 6, Temperature = 0, IgnoreEos = true },
                prompt, 0, config.EosTokenId);
        })];
        var expected = Make();
        using (var model = ResidentModel.Load(source, config, ScalarType.Float32, CPU))
            BatchGenerator.Run(model, expected, Harness.Decode, compressCache: true);
        var actual = Make();
        var chunk = CompressedKvHome.StoreChunkTokens;
        CompressedKvHome.StoreChunkTokens = 7;
        try
        {
            var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
            using var copies = new CpuCopyEngine();
            using var engine = new OffloadRuntime(config, source, new Policy(2, 2, Gpu, Cpu, Gpu) { CpuAttention = false, CompressCache = true },
                tiers, copies, ScalarType.Float32);
            engine.Generate(actual, Harness.Decode);
        }
        finally
        {
            CompressedKvHome.StoreChunkTokens = chunk;
        }
        Assert.Equal(expected.Select(s => s.OutputIds), actual.Select(s => s.OutputIds));
    }

    [Fact]
    public void A_compressed_cache_changes_the_outputs_but_keeps_them_close()
    {
        using var source = new RandomWeights(TestConfigs.PreLn, seed: 7);
        var exact = Harness.Reference(TestConfigs.PreLn, source, 6);
        var compressed = Harness.Reference(TestConfigs.PreLn, source, 6, compressCache: true);
        var differences = exact.Zip(compressed).Sum(p => p.First.OutputLogprobs.Zip(p.Second.OutputLogprobs).Count(l => l.First != l.Second));
        Assert.True(differences > 0, "compression left every logprob unchanged: the cache was not compressed");
        var matching = exact.Zip(compressed).Sum(p => p.First.OutputIds.Zip(p.Second.OutputIds).TakeWhile(t => t.First == t.Second).Count());
        Assert.True(matching >= exact.Sum(s => s.OutputIds.Count) / 2, $"only {matching} leading tokens agree with the uncompressed run");
    }

    [Fact]
    public void PostLayerNormModelWithProjectionsMatchesTheReferenceOffloaded()
    {
        var policy = new Policy(2, 2, Thirds, Half, HalfDisk) { CpuAttention = true };
        Check(TestConfigs.PostLn, policy, 4, "post-LN thirds");
    }

    /// <summary>A finished sequence goes on through its batch's steps, past the model's context (64 positions).</summary>
    [Fact]
    public void A_long_prompt_that_finishes_early_beside_a_long_generation_matches_the_reference() =>
        Harness.AssertLongAndShortAsAlone(TestConfigs.PreLn, 60, 2, 40, new Policy(2, 1, Gpu, Cpu, Gpu));

    private static void Check(ModelConfig config, Policy policy, int count, string name)
    {
        using var source = new RandomWeights(config, seed: 7);
        var expected = Harness.Reference(config, source, count, compressCache: policy.CompressCache);
        var folder = Harness.TempFolder();
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, folder, Harness.Generous);
        var liveBefore = Harness.LiveTensors();
        var actual = Harness.Sequences(config, count);
        using (var copies = new CpuCopyEngine())
        using (var engine = new OffloadRuntime(config, source, policy, tiers, copies, ScalarType.Float32))
        {
            engine.Generate(actual, Harness.Decode);
            var plan = engine.LastPlan!;
            foreach (var tier in tiers.All())
                Assert.True(tier.PeakBytes <= plan.Total.Of(tier.Kind),
                    $"{name}: {tier.Kind} peaked at {tier.PeakBytes} B, plan allows {plan.Total.Of(tier.Kind)} B ({plan.Total})");
            // Between jobs only the weights remain.
            foreach (var tier in tiers.All())
                Assert.Equal(plan.Weights.Of(tier.Kind), tier.BytesHeld);
        }
        Harness.AssertAllFreed(tiers);
        if (liveBefore is { } before) Assert.Equal(before, Harness.LiveTensors());
        Assert.Empty(Directory.GetFiles(folder));
        Directory.Delete(folder);

        for (var i = 0; i < count; i++)
        {
            Assert.Equal(expected[i].OutputIds, actual[i].OutputIds);
            Assert.Equal(expected[i].FinishReason, actual[i].FinishReason);
            for (var t = 0; t < expected[i].OutputLogprobs.Count; t++)
                Assert.InRange(actual[i].OutputLogprobs[t] - expected[i].OutputLogprobs[t], -1e-5, 1e-5);
            if (expected[i].PromptLogprobs is { } prompt)
            {
                Assert.NotNull(actual[i].PromptLogprobs);
                for (var j = 1; j < prompt.Count; j++)
                    Assert.InRange(actual[i].PromptLogprobs![j]!.Value - prompt[j]!.Value, -1e-5, 1e-5);
            }
        }
    }
}
