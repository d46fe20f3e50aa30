using ActorInfer.Model.Layers;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ActorInfer.Model.Tests.Layers;

/// <summary>
/// The plain linear map forms x W^T + b as PyTorch's own linear does: a contiguous [batch, tokens, features] input is
/// taken as rows and multiplied with the bias as the product's input (one addmm, the bias added in the product's
/// epilogue on CUDA), not by a product and then an add of its own.
/// </summary>
public sealed class FusedLinearTests
{
    [Theory]
    [InlineData(4, 1, 64, 96, false)]  // a decoding step: one token a sequence
    [InlineData(3, 7, 80, 48, false)]  // a prefill
    // In half precision the product and the bias are rounded once: the functional linear over three dimensions (a product,
    // then an add) parts from this in 70 of 384 and 195 of 1,008 outputs.
    [InlineData(4, 1, 64, 96, true)]
    [InlineData(3, 7, 80, 48, true)]
    public void A_contiguous_input_is_one_product_with_the_bias_as_addmm_forms_it(int batch, int tokens, int features, int outputs, bool half)
    {
        var generator = new Generator(5);
        using var scope = NewDisposeScope();
        var dtype = half ? ScalarType.Float16 : ScalarType.Float32;
        var x = randn([batch, tokens, features], generator: generator).to(dtype);
        var w = randn([outputs, features], generator: generator).mul_(0.05).to(dtype);
        var b = randn([outputs], generator: generator).to(dtype);
        var expected = addmm(b, x.reshape(batch * tokens, features), w.t(), 1, 1).view(batch, tokens, outputs);
        var actual = Products.Plain.Linear(x, w, b);
        Assert.Equal([batch, tokens, outputs], actual.shape);
        Assert.True(actual.is_contiguous());
        Assert.True(expected.eq(actual).all().item<bool>(), "the map differs from one addmm over the rows");
    }

    [Fact]
    public void A_strided_input_or_no_bias_takes_the_functional_linear()
    {
        var generator = new Generator(6);
        using var scope = NewDisposeScope();
        var w = randn([32, 16], generator: generator);
        var b = randn([32], generator: generator);
        var strided = randn([5, 16, 3], generator: generator).transpose(1, 2);
        Assert.False(strided.is_contiguous());
        Assert.True(F.linear(strided, w, b).eq(Products.Fused(strided, w, b)).all().item<bool>());
        var x = randn([2, 3, 16], generator: generator);
        Assert.True(F.linear(x, w).eq(Products.Fused(x, w)).all().item<bool>());
    }
}
