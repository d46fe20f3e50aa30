namespace ActorInfer.Planning.Tests;

/// <summary>FlexGen's rule for placing weights.</summary>
public class WeightPlacementTests
{
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
}
