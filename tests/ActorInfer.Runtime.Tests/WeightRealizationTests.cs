using ActorInfer.Model.Config;
using ActorInfer.Model.Layers;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;
using ActorInfer.Runtime.Placement;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using ActorInfer.TestSupport;

namespace ActorInfer.Runtime.Tests;

/// <summary>
/// One rule places the weights: what the planner counts per tier for a policy's weight fractions is what the runtime's
/// placement holds, for OPT and LLaMA shapes over a grid of fractions, and the stacked Q, K and V change nothing of it.
/// </summary>
public sealed class WeightRealizationTests
{
    private const int ElementSize = 2;

    /// <summary>Weight fractions: GPU from 0 to 100% in steps of 5, with none, a tenth, a quarter or half of the rest on disk.</summary>
    private static IEnumerable<TierFractions> Grid()
    {
        for (var gpu = 0; gpu <= 100; gpu += 5)
            foreach (var diskShare in new[] { 0.0, 0.1, 0.25, 0.5 })
            {
                var disk = (100 - gpu) * diskShare;
                yield return TierFractions.FromPercent(gpu, 100 - gpu - disk);
            }
    }

    /// <summary>The test configs, published OPT and LLaMA shapes (no weights needed), and the Hugging Face fixtures.</summary>
    private static IEnumerable<(ModelConfig Config, Func<IWeightSource> Source)> Models()
    {
        // (TestConfigs.Llama's query heads are wider than its hidden size, a shape the planner cannot describe.)
        foreach (var config in new ModelConfig[] { TestConfigs.PreLn, TestConfigs.PostLn, TestConfigs.QwenLike })
            yield return (config, () => new DummyWeightSource(config));
        foreach (var name in new[] { "opt-125m", "opt-350m", "opt-6.7b", "opt-30b", "opt-175b", "llama-2-7b", "llama-3.1-8b", "llama-3.1-70b" })
        {
            var config = ModelConfigs.Named(name);
            yield return (config, () => new DummyWeightSource(config));
        }
        foreach (var dir in Fixtures.HfOptModels.Select(Fixtures.HfOpt).Concat(Fixtures.HfLlamaModels.Select(Fixtures.HfLlama)))
        {
            var config = ModelConfigs.Resolve(dir);
            yield return (config, () => ModelFiles.OpenCheckpoint(dir, config));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_planner_counts_per_tier_the_weight_bytes_the_runtime_places(bool spread)
    {
        foreach (var (config, open) in Models())
        {
            using var source = open();
            var layers = ScheduleLayer.For(config, source);
            var spec = ModelSpecs.From(config, ElementSize);
            foreach (var weights in Grid())
            {
                var policy = new Policy(1, 1, weights, TierFractions.AllGpu, TierFractions.AllGpu) { SpreadWeights = spread };
                var plan = PlacementPlan.ForWeights(layers, policy, ElementSize, deviceIsCpu: false);
                var placed = plan.Weights;
                var realized = spec.RealizeWeights(weights, spread);
                var model = realized.Model;
                Assert.True(new Placement.TierBytes((long)model.Gpu, (long)model.Cpu, (long)model.Disk) == placed,
                    $"{config.Name} at {weights}: planner {model}, runtime {placed}");
                // The decoder layer with the most off the device (what a buffer of loaded weights holds), as the planner counts it.
                var largest = layers.Select((layer, j) => (layer, j)).Where(l => l.layer.Kind == ScheduleLayerKind.Decoder)
                    .Max(l => l.layer.Weights.Where((_, i) => plan.WeightTiers[l.j][i] != TierKind.Device).Sum(w => w.Elements * ElementSize));
                Assert.Equal(largest, (long)realized.LargestOffGpuLayer);
            }
        }
    }

    /// <summary>
    /// OPT-30B's block of 24 x 3 (cache 10% on the device): over a sweep of device rooms from the weights all off it to all on
    /// it, the largest placement of whole percents that fits holds 35.0 GiB on average spread over the model, 28.9 GiB by
    /// FlexGen's rule, whose steps are whole tensor kinds (12.6 GiB at 15 to 25%, then 30.3 GiB at 30%).
    /// </summary>
    [Fact]
    public void Spread_over_the_model_the_weights_fill_more_of_a_device_room_than_by_flexgens_rule()
    {
        var config = ModelConfigs.Named("opt-30b");
        var layers = ScheduleLayer.For(config, (long[]?)null);
        var shapes = Enumerable.Range(0, 3).Select(_ => new BatchShape(24, 512, 544)).ToArray();
        long[] Bytes(bool spread) => [.. Enumerable.Range(0, 101).Select(percent => PlacementPlan.ForBlock(layers, config,
            new Policy(24, 3, TierFractions.FromPercent(percent, 100 - percent), new TierFractions(0.1, 0.9, 0), TierFractions.AllCpu)
            { CpuAttention = true, SpreadWeights = spread }, ElementSize, shapes, deviceIsCpu: false).Total.Device)];
        var rule = Bytes(false);
        var spreadBytes = Bytes(true);
        Assert.Equal(rule[0], spreadBytes[0]);
        Assert.Equal(rule[100], spreadBytes[100]);
        double byRule = 0, bySpread = 0;
        var rooms = 0;
        for (var room = rule[0]; room <= rule[100]; room += (rule[100] - rule[0]) / 200, rooms++)
        {
            byRule += rule.Where(b => b <= room).Max();
            bySpread += spreadBytes.Where(b => b <= room).Max();
        }
        Assert.InRange(bySpread / byRule, 1.15, 1.30);
        Assert.InRange(bySpread / rooms / (1L << 30), 34.5, 35.5);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Q_k_and_v_stack_exactly_where_they_share_a_tier_and_place_as_apart(bool spread)
    {
        foreach (var config in new ModelConfig[] { TestConfigs.PreLn, TestConfigs.Llama, TestConfigs.QwenLike, ModelConfigs.Named("opt-30b") })
        {
            using var source = new DummyWeightSource(config);
            var apart = ScheduleLayer.For(config, source);
            var parts = ModelArchitecture.QkvWeightParts.Concat(ModelArchitecture.QkvBiasParts).ToHashSet();
            foreach (var weights in Grid())
            {
                var policy = new Policy(1, 1, weights, TierFractions.AllGpu, TierFractions.AllGpu) { SpreadWeights = spread };
                var apartPlan = PlacementPlan.ForWeights(apart, policy, ElementSize, deviceIsCpu: false);
                // By layer and name: with a tied head the token embeddings are in the input layer and, a copy, in the output layer.
                var tiers = new Dictionary<(int, string), TierKind>();
                for (var j = 0; j < apart.Count; j++)
                    for (var i = 0; i < apart[j].Weights.Count; i++)
                        tiers[(j, apart[j].Weights[i].Name)] = apartPlan.WeightTiers[j][i];
                var stacked = ScheduleLayer.For(config, source, names =>
                    names.Select(n => tiers.Single(t => t.Key.Item2 == n).Value).Distinct().Count() == 1);
                var stackedPlan = PlacementPlan.ForWeights(stacked, policy, ElementSize, deviceIsCpu: false);
                Assert.Equal(apartPlan.Weights, stackedPlan.Weights);
                for (var j = 0; j < stacked.Count; j++)
                {
                    var layer = stacked[j];
                    var qkvTiers = apart[j].Weights.Where(w => parts.Any(p => w.Name.EndsWith(p, StringComparison.Ordinal))).Select(w => tiers[(j, w.Name)]).Distinct().ToArray();
                    Assert.Equal(layer.Kind == ScheduleLayerKind.Decoder && qkvTiers.Length == 1, layer.Weights.Any(w => w.Parts is not null));
                    for (var i = 0; i < layer.Weights.Count; i++)
                    {
                        // A stack lies where its parts lie; every other tensor where it lay apart.
                        var expected = tiers[(j, layer.Weights[i].Parts?[0] ?? layer.Weights[i].Name)];
                        Assert.True(expected == stackedPlan.WeightTiers[j][i], $"{config.Name} {weights} {layer.Weights[i].Name}: {expected} vs {stackedPlan.WeightTiers[j][i]}");
                    }
                }
            }
        }
    }
}
