using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Layers;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

/// <summary>
/// Weights stored 4-bit compressed (<c>--compress-weight</c>) in any tier: a run computes exactly what the resident
/// reference computes over the same weights compressed and expanded once, and every tier holds what the plan says.
/// </summary>
public sealed class CompressedWeightTests
{
    private static readonly TierFractions Gpu = TierFractions.AllGpu, Cpu = TierFractions.AllCpu, Disk = TierFractions.AllDisk;
    private static readonly TierFractions Half = new(0.5, 0.5, 0), Thirds = new(1 / 3.0, 1 / 3.0, 1 / 3.0);

    public static TheoryData<string, int, int, int, TierFractions, TierFractions, bool> Placements() => new()
    {
        { "weights on the device 2x3", 2, 3, 5, Gpu, Gpu, false },
        { "weights cpu 4x2", 4, 2, 7, Cpu, Gpu, false },
        { "weights disk, cache cpu, cpu attention 2x3", 2, 3, 6, Disk, Cpu, true },
        { "weights in thirds, cache halves 2x3", 2, 3, 5, Thirds, Half, true },
    };

    [Theory]
    [MemberData(nameof(Placements))]
    public void A_llama_with_compressed_weights_matches_the_reference_over_the_expanded_weights(string name, int batchSize, int batches,
        int sequences, TierFractions weights, TierFractions cache, bool cpuAttention)
    {
        var policy = new Policy(batchSize, batches, weights, cache, Half) { CpuAttention = cpuAttention, CompressWeights = true };
        Check(TestConfigs.Llama, policy, sequences, name);
    }

    [Fact]
    public void An_opt_model_with_compressed_weights_and_a_compressed_cache_matches_the_reference()
    {
        var policy = new Policy(2, 2, Thirds, Half, Half) { CpuAttention = false, CompressWeights = true, CompressCache = true };
        Check(TestConfigs.PreLn, policy, 4, "opt, both compressed");
    }

    [Fact]
    public void Compressed_weights_are_stored_in_about_a_quarter_of_the_bytes()
    {
        var config = TestConfigs.Llama;
        using var source = new RandomWeights(config, seed: 7);
        var all = new Policy(1, 1, Cpu, Gpu, Gpu);
        var plain = OffloadRuntime.PlanFor(config, source, all, ScalarType.Float16, deviceIsCpu: false, 8, 4);
        var compressed = OffloadRuntime.PlanFor(config, source, all with { CompressWeights = true }, ScalarType.Float16, deviceIsCpu: false, 8, 4);
        // 0.5 bytes a value and two float16 ranges a group (of 16 or 32 here: the Llama's widths are not multiples of 64).
        var layers = ScheduleLayer.For(config, source);
        long expected = 0, largestExpanded = 0;
        foreach (var layer in layers)
        {
            expected += layer.Weights.Sum(w => WeightCompression.StoredBytes(w.Shape, 2, compress: true));
            largestExpanded = Math.Max(largestExpanded, layer.Weights.Where(w => w.Shape.Length >= 2).Sum(w => w.Elements * 2));
        }
        Assert.Equal(expected, compressed.Weights.Cpu);
        Assert.True(compressed.Weights.Cpu < plain.Weights.Cpu * 0.5, $"{compressed.Weights.Cpu} B compressed against {plain.Weights.Cpu} B");
        // The device holds the double-buffered compressed copies and one expanded layer.
        var largestStored = layers.Max(l => l.Weights.Sum(w => WeightCompression.StoredBytes(w.Shape, 2, compress: true)));
        Assert.Equal(2 * largestStored + largestExpanded, compressed.Working.Device - (plain.Working.Device - 2 * layers.Max(l => l.Weights.Sum(w => w.Elements * 2))));
    }

    [Fact]
    public void Compressed_weights_move_between_tiers_and_the_tokens_stay()
    {
        var config = TestConfigs.Llama;
        using var source = new RandomWeights(config, seed: 7);
        var expected = Reference(config, source, 5);
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
        using (var copies = new CpuCopyEngine())
        using (var engine = new OffloadRuntime(config, source, new Policy(2, 3, Gpu, Gpu, Gpu) { CompressWeights = true }, tiers, copies,
                   ScalarType.Float32, keepHostCopies: true))
        {
            Assert.True(engine.CompressesWeights);
            var stored = engine.WeightPlan.Weights.Device;
            Assert.Equal(stored, tiers.Device.BytesHeld);
            Assert.Equal(0, tiers.Cpu.BytesHeld);
            // A planner's policy without the flag still places the weights as they are stored.
            var moved = engine.Replace(new Policy(2, 3, Cpu, Gpu, Gpu));
            Assert.Equal(stored, moved);
            Assert.True(engine.Policy.CompressWeights);
            Assert.Equal(0, tiers.Device.BytesHeld);
            Assert.Equal(stored, tiers.Cpu.BytesHeld);
            var actual = Harness.Sequences(config, 5);
            engine.Generate(actual, Harness.Decode);
            Assert.Equal(expected.Select(s => s.OutputIds), actual.Select(s => s.OutputIds));
            Assert.Equal(stored, tiers.Cpu.BytesHeld);
        }
        Harness.AssertAllFreed(tiers);
    }

    [Fact]
    public void Random_float16_weights_compressed_keep_a_run_finite()
    {
        // The dummy source's weights as bench draws them (float16 where the device allows it; float32 on the CPU), compressed.
        var config = TestConfigs.Llama;
        using var source = new DummyWeightSource(config, seed: 0);
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
        var actual = Harness.Sequences(config, 3);
        using (var copies = new CpuCopyEngine())
        using (var engine = new OffloadRuntime(config, source, new Policy(3, 1, Half, Gpu, Gpu) { CompressWeights = true }, tiers, copies, ScalarType.Float32))
            engine.Generate(actual, Harness.Decode);
        Assert.All(actual, s => Assert.All(s.OutputLogprobs, l => Assert.True(double.IsFinite(l), $"log-probability {l}")));
        Harness.AssertAllFreed(tiers);
    }

    private static List<SequenceState> Reference(ModelConfig config, IWeightSource weights, int count, bool compressCache = false)
    {
        var sequences = Harness.Sequences(config, count);
        using var expanded = new ExpandedWeights(weights);
        using var model = ResidentModel.Load(expanded, config, ScalarType.Float32, CPU);
        BatchGenerator.Run(model, sequences, Harness.Decode, compressCache);
        return sequences;
    }

    private static void Check(ModelConfig config, Policy policy, int count, string name)
    {
        using var source = new RandomWeights(config, seed: 7);
        var expected = Reference(config, source, count, policy.CompressCache);
        var folder = Harness.TempFolder();
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, folder, Harness.Generous);
        var actual = Harness.Sequences(config, count);
        using (var copies = new CpuCopyEngine())
        using (var engine = new OffloadRuntime(config, source, policy, tiers, copies, ScalarType.Float32))
        {
            engine.Generate(actual, Harness.Decode);
            var plan = engine.LastPlan!;
            foreach (var tier in tiers.All())
                Assert.True(tier.PeakBytes <= plan.Total.Of(tier.Kind),
                    $"{name}: {tier.Kind} peaked at {tier.PeakBytes} B, plan allows {plan.Total.Of(tier.Kind)} B ({plan.Total})");
            foreach (var tier in tiers.All())
                Assert.Equal(plan.Weights.Of(tier.Kind), tier.BytesHeld);
        }
        Harness.AssertAllFreed(tiers);
        Assert.Empty(Directory.GetFiles(folder));
        Directory.Delete(folder);
        for (var i = 0; i < count; i++)
        {
            Assert.Equal(expected[i].OutputIds, actual[i].OutputIds);
            for (var t = 0; t < expected[i].OutputLogprobs.Count; t++)
                Assert.InRange(actual[i].OutputLogprobs[t] - expected[i].OutputLogprobs[t], -1e-5, 1e-5);
        }
    }

    /// <summary>A source's weights compressed and expanded once: what a compressed-weight run computes with.</summary>
    private sealed class ExpandedWeights(IWeightSource inner) : IWeightSource
    {
        public bool Contains(string name) => inner.Contains(name);

        public long[] Shape(string name) => inner.Shape(name);

        public Tensor Load(string name, ScalarType dtype, Device device)
        {
            var weight = inner.Load(name, dtype, device);
            if (!WeightCompression.Compresses(weight.shape)) return weight;
            using (weight)
            {
                var (codes, ranges) = WeightCompression.Compress(weight);
                using (codes)
                using (ranges)
                    return WeightCompression.Decompress(codes, ranges, weight.shape);
            }
        }

        public void Dispose()
        {
        }
    }
}
