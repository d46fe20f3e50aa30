using ActorInfer.Model.Layers;
using static TorchSharp.torch;

namespace ActorInfer.Model.Tests.Layers;

/// <summary>
/// The fused decoding attention and LayerNorm kernels are CUDA's (`actorinfer version` checks them on a GPU against single
/// precision): on the CPU they must not apply, and asking for them must leave the results libtorch's, bit for bit.
/// </summary>
public sealed class FusedKernelsTests
{
    [Fact]
    public void On_the_cpu_fused_decoding_attention_gives_libtorch_s_attention()
    {
        using var scope = NewDisposeScope();
        var generator = new TorchSharp.torch.Generator(3);
        var q = randn([3, 4, 1, 16], generator: generator);
        var keys = randn([3, 2, 21, 16], generator: generator);
        var values = randn([3, 2, 21, 16], generator: generator);
        var mask = arange(21).ge(tensor(new long[] { 0, 4, 9 }, [3, 1, 1, 1]));
        Assert.Null(DecodeAttentionCuda.TryDecode(q, keys, values, mask));
        var fused = AttentionMath.Attend(q, keys, values, mask, decode: DecodeAttention.Fused);
        var products = AttentionMath.Attend(q, keys, values, mask, decode: DecodeAttention.Products);
        Assert.True(fused.equal(products).all().item<bool>());
    }

    [Fact]
    public void On_the_cpu_layer_norm_is_libtorch_s()
    {
        using var scope = NewDisposeScope();
        var x = randn([2, 3, 64], dtype: ScalarType.Float32);
        var w = new NormWeights(randn([64]), randn([64]));
        Assert.Null(LayerNormCuda.TryNorm(x, w.Weight, w.Bias, 1e-5));
        var normed = OptMath.Norm(x, w);
        Assert.True(normed.equal(nn.functional.layer_norm(x, [64], w.Weight, w.Bias, 1e-5)).all().item<bool>());
    }

    [Theory]
    [InlineData(128, 1, true)]
    [InlineData(64, 8, true)]
    [InlineData(16, 2, true)]
    [InlineData(80, 1, false)]
    [InlineData(128, 3, false)]
    [InlineData(512, 1, false)]
    public void The_kernel_is_built_for_head_sizes_16_to_256_and_groups_of_1_to_8(long headDim, long group, bool built) =>
        Assert.Equal(built, DecodeAttentionCuda.Takes(headDim, group));

    [Fact]
    public void Each_head_size_and_group_gets_its_own_source_with_both_types()
    {
        var source = DecodeAttentionCuda.Source(128, 4);
        Assert.Contains("#define DIM 128", source);
        Assert.Contains("#define GROUP 4", source);
        foreach (var name in new[] { "decode_half", "decode_bf16", "merge_half", "merge_bf16" })
            Assert.Contains($"extern \"C\" __global__ void __launch_bounds__(THREADS) {name}(", source);
        Assert.Equal(source.Count(c => c == '{'), source.Count(c => c == '}'));
    }
}
