using static ActorInfer.Planning.Tests.TestData;

namespace ActorInfer.Planning.Tests;

/// <summary>FlexGen's rule for placing weights, and the search and the cost model pricing a policy's weights as placed.</summary>
public class WeightPlacementTests
{
    private static readonly Workload Prompt512 = new(512, 32);
    private static readonly MemoryBudget T4 = new(16_000_000_000, 208_000_000_000, 1_500_000_000_000);

    [Fact]
    public void Each_tensor_goes_where_its_midpoint_falls_the_disk_first()
    {
        // Four equal tensors: midpoints 1/8, 3/8, 5/8, 7/8 against disk [0, 0.5), CPU [0.5, 0.75), GPU [0.75, 1].
        Assert.Equal([Tier.Disk, Tier.Disk, Tier.Cpu, Tier.Gpu], WeightPlacement.Assign([1, 1, 1, 1], new TierFractions(0.25, 0.25, 0.5)));
        // Sizes 6, 1, 1: midpoints 3/8, 13/16, 15/16; 20% on the GPU starts at 0.8.
        Assert.Equal([Tier.Cpu, Tier.Gpu, Tier.Gpu], WeightPlacement.Assign([6, 1, 1], new TierFractions(0.2, 0.8, 0)));
        // A midpoint on an edge goes above it (FlexGen's "cur_percent < percents[i]").
        Assert.Equal([Tier.Disk, Tier.Cpu], WeightPlacement.Assign([1, 2], new TierFractions(0, 0.5, 0.5)));
        // A tier with no share gets nothing, even at the top end.
        Assert.Equal([Tier.Cpu, Tier.Cpu], WeightPlacement.Assign([1, 1], TierFractions.AllCpu));
    }

    [Fact]
    public void Opt_30b_at_20_percent_has_only_the_output_projection_and_the_vectors_after_it_on_the_gpu()
    {
        var model = OptModels.Get("opt-30b");
        var weights = new TierFractions(0.2, 0.8, 0);
        var attention = WeightPlacement.Assign(model.WeightLayout.Layer[0], weights);
        var mlp = WeightPlacement.Assign(model.WeightLayout.Layer[1], weights);
        // Q, K, V and their biases; then the output projection, its bias and the LayerNorm's weight and bias.
        Assert.Equal([Tier.Cpu, Tier.Cpu, Tier.Cpu, Tier.Cpu, Tier.Cpu, Tier.Cpu, Tier.Gpu, Tier.Gpu, Tier.Gpu, Tier.Gpu], attention);
        // fc1, its bias and fc2 (midpoint at 75%); fc2's bias and the LayerNorm.
        Assert.Equal([Tier.Cpu, Tier.Cpu, Tier.Cpu, Tier.Gpu, Tier.Gpu, Tier.Gpu], mlp);
        var realized = model.RealizeWeights(weights);
        long h = model.HiddenSize;
        Assert.Equal((h * h + 6 * h) * 2.0, realized.Layer.Gpu);
        Assert.Equal(model.LayerWeightBytes, realized.Layer.Gpu + realized.Layer.Cpu);
        // 8.2% of what is placed: FlexGen's T4 run held 5 GB of weights on its GPU, not 12.
        Assert.InRange(realized.Fractions.Gpu, 0.0815, 0.0820);
        Assert.Equal(model.PlacedWeightBytes, realized.Model.Gpu + realized.Model.Cpu + realized.Model.Disk);
    }

    [Fact]
    public void The_opt_layout_holds_the_layer_and_a_copy_of_the_tied_token_embeddings()
    {
        foreach (var model in OptModels.All)
        {
            Assert.Equal(model.LayerWeightBytes, model.WeightLayout.LayerElements * model.BytesPerElement);
            Assert.Equal(model.TotalWeightBytes + (long)model.VocabSize * model.HiddenSize * model.BytesPerElement, model.PlacedWeightBytes);
        }
    }

    [Fact]
    public void The_cost_model_prices_weights_as_placed()
    {
        // Tiny model (h = 8, f = 32) at 50% on the GPU. Attention [64, 8, 64, 8, 64, 8, 64, 8, 8, 8] (304): midpoints
        // from V's (176/304 = 0.58) on are past 0.5, so V, out and the vectors after them, 160. MLP [256, 32, 256, 8, 8, 8]
        // (568): from fc2's (416/568 = 0.73) on, 280. A layer: 440 of 872 parameters on the GPU, 432 on the CPU. Input
        // [800, 96]: the positions (848/896); output [8, 8, 800]: the tokens (416/816). 2 x 440 + 96 + 800 = 1776.
        var policy = Place(new TierFractions(0.5, 0.5, 0), Gpu, Gpu);
        var estimate = CostModel.Evaluate(TinyModel, new Workload(4, 4), policy, RoundProfile);
        var realized = estimate.RealizedWeights;
        Assert.Equal(TinyModel.RealizeWeights(policy.Weights), realized);
        Assert.Equal(new TierBytes(440 * 2, 432 * 2, 0), realized.Layer);
        Assert.Equal(1776 * 2, realized.Model.Gpu);
        // The layer's CPU part is loaded each layer, at 1000 B/s; it and the next layer's are buffered on the GPU.
        Assert.Equal(864 / 1000.0, estimate.Prefill.CpuToGpuSeconds, 1e-12);
        Assert.Equal(1776 * 2, estimate.PrefillGpuParts.Single(p => p.Name == "weights").Bytes, 1e-9);
        Assert.Equal(2 * 864, estimate.PrefillGpuParts.Single(p => p.Name == "weight_buffers").Bytes, 1e-9);
    }

    [Theory]
    [InlineData("opt-30b", 16_000_000_000L, false)]
    [InlineData("opt-6.7b", 12_000_000_000L, true)]
    [InlineData("opt-175b", 16_000_000_000L, false)]
    public void The_searched_policy_is_priced_and_fits_as_its_fractions_place_it(string name, long gpu, bool compress)
    {
        var model = OptModels.Get(name);
        var budget = new MemoryBudget(gpu, T4.CpuBytes, T4.DiskBytes);
        var result = PolicySearch.Find(model, Prompt512, HardwareProfiles.T4FlexGen, budget,
            new SearchOptions { CompressWeights = compress, CompressCache = compress });
        Assert.Equal(model.RealizeWeights(result.Policy.Weights), result.Estimate.RealizedWeights);
        var again = CostModel.Evaluate(model, Prompt512, result.Policy, HardwareProfiles.T4FlexGen);
        Assert.Equal(again.ThroughputTokensPerSecond, result.Estimate.ThroughputTokensPerSecond, 9);
        Assert.Equal(again.PeakMemory, result.Estimate.PeakMemory);
        Assert.True(budget.Fits(again.PeakMemory), $"{result.Policy} peaks at {again.PeakMemory}");
    }
}
