using ActorInfer.Model.Config;
using ActorInfer.Planning;
using ActorInfer.Runtime.Placement;

namespace ActorInfer.Runtime.Tests;

/// <summary>What the planner is told of a model: the architecture's own matrices and a cache as wide as its key/value heads.</summary>
public sealed class ModelSpecsTests
{
    [Fact]
    public void The_planner_sizes_llama_3_1_8b_cache_by_its_key_value_heads()
    {
        var spec = ModelSpecs.From(ModelConfigs.Named("llama-3.1-8b"), bytesPerElement: 2);
        // 32 layers x (keys + values) x 8 heads x 128 x 2 bytes per token: 8,192 tokens of one sequence are 1 GiB.
        Assert.Equal(1L << 30, spec.CacheBytesPerTokenPerLayer * spec.NumLayers * 8192);
        // The cost model's peak on disk with only the cache there: one sequence of 8,192 tokens (8,191 prompt + 1 generated).
        var policy = new Policy(1, 1, TierFractions.AllGpu, TierFractions.AllDisk, TierFractions.AllGpu);
        var estimate = CostModel.Evaluate(spec, new Workload(8191, 1), policy, HardwareProfiles.T4FlexGen);
        Assert.Equal(1L << 30, (long)estimate.PeakMemory.Disk);
    }

    [Fact]
    public void The_planner_counts_the_architectures_own_matrices()
    {
        var spec = ModelSpecs.From(ModelConfigs.Named("llama-3.1-8b"), bytesPerElement: 2);
        Assert.Equal(8_030_261_248L * 2, spec.TotalWeightBytes);
        // Per token and layer: q and o 4096 x 4096, k and v 1024 x 4096, three MLP matrices 4096 x 14336; two FLOPs each.
        Assert.Equal(2.0 * (2 * 4096.0 * 4096 + 2 * 1024.0 * 4096 + 3 * 4096.0 * 14336), spec.LayerMatmulFlopsPerToken);
    }

    [Fact]
    public void A_gated_mlp_holds_its_gate_activation_up_and_product_at_once()
    {
        var spec = ModelSpecs.From(ModelConfigs.Named("llama-3.1-8b"), bytesPerElement: 2);
        Assert.True(spec.GatedFfn);
        Assert.False(ModelSpecs.From(ModelConfigs.Named("opt-6.7b"), bytesPerElement: 2).GatedFfn);
        var policy = new Policy(1, 1, TierFractions.AllGpu, TierFractions.AllGpu, TierFractions.AllGpu);
        var estimate = CostModel.Evaluate(spec, new Workload(512, 32), policy, HardwareProfiles.T4FlexGen);
        // Per token the MLP stage (attended and normed 2 x 4096, four intermediates of 14336) outweighs the attention
        // stage (4096 + 3 x 4096 + 2 x 1024 keys and values + 2 x 4096 repeated for the kernel): 2 bytes x 512 tokens.
        Assert.Equal(2.0 * 512 * (2 * 4096 + 4 * 14336), estimate.PrefillGpuParts.Single(p => p.Name == "compute").Bytes);
    }

    [Fact]
    public void Opt_is_described_as_before()
    {
        var spec = ModelSpecs.From(ModelConfigs.Named("opt-6.7b"), bytesPerElement: 2);
        Assert.Equal(OptModels.Get("opt-6.7b"), spec with { CpuAttendsCacheCodes = false });
    }

    /// <summary>The planner hears whether this machine's runtime reads a compressed cache's codes on the CPU, model by model.</summary>
    [Theory]
    [InlineData("opt-6.7b", 128, 4096)]
    [InlineData("opt-2.7b", 80, 2560)]
    [InlineData("llama-3.1-8b", 128, 1024)]
    public void Whether_a_compressed_cache_is_read_from_its_codes_on_the_cpu_is_the_runtime_s(string name, int headDim, int cacheWidth)
    {
        var attends = ActorInfer.Model.Layers.InvariantAttention.AttendsCodes(headDim, cacheWidth);
        Assert.Equal(attends, ModelSpecs.From(ModelConfigs.Named(name), bytesPerElement: 2).CpuAttendsCacheCodes);
        // Heads of 80 in 2,560 make groups that cross heads: never read from codes.
        if (headDim == 80) Assert.False(attends);
        else Assert.Equal(System.Runtime.Intrinsics.X86.Avx512F.IsSupported, attends);
    }
}
