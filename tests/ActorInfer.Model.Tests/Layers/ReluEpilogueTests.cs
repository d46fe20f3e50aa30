using ActorInfer.Model.Layers;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ActorInfer.Model.Tests.Layers;

public class ReluEpilogueTests
{
    [Theory]
    [InlineData(2, 3)]
    [InlineData(4, 1)]
    public void The_native_operator_forms_the_relu_of_the_product_plus_bias(int batch, int tokens)
    {
        using var scope = NewDisposeScope();
        var generator = new Generator(17);
        var x = randn([batch, tokens, 7], generator: generator);
        var weight = randn([5, 7], generator: generator);
        var bias = randn([5], generator: generator);
        var fused = ReluEpilogue.Form(x, weight, bias);
        Assert.NotNull(fused);
        Assert.Equal(new long[] { batch, tokens, 5 }, fused.shape);
        var expected = F.linear(x, weight, bias).relu();
        Assert.True(fused.allclose(expected, 1e-5, 1e-6));
        Assert.True(expected.le(0).any().item<bool>(), "the case must hold negatives for the ReLU to clear");
        Assert.Equal(0, fused.lt(0).sum().item<long>());
    }

    [Fact]
    public void The_engine_keeps_the_cpu_on_its_own_path()
    {
        using var scope = NewDisposeScope();
        Assert.Null(ReluEpilogue.TryLinearRelu(ones(1, 1, 4), ones(3, 4), ones(3)));
    }

    [Fact]
    public void Arguments_the_operator_would_refuse_are_refused_before_the_call()
    {
        using var scope = NewDisposeScope();
        var x = ones(2, 1, 4);
        Assert.Null(ReluEpilogue.Form(x, ones(3, 5), ones(3)));
        Assert.Null(ReluEpilogue.Form(x, ones(3, 4), ones(4)));
        Assert.Null(ReluEpilogue.Form(x, ones(3, 4, dtype: ScalarType.Float64), ones(3)));
        Assert.Null(ReluEpilogue.Form(ones(2, 4), ones(3, 4), ones(3)));
        Assert.Null(ReluEpilogue.Form(ones(2, 4, 3).transpose(1, 2), ones(3, 4), ones(3)));
    }
}
