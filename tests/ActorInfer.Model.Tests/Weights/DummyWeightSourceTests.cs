using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using TorchSharp;

namespace ActorInfer.Model.Tests.Weights;

public sealed class DummyWeightSourceTests
{
    private const string Fc1 = "decoder.layers.1.fc1.weight";

    [Fact]
    public void HasEveryTensorTheConfigNeedsWithItsShape()
    {
        var config = OptConfigs.Named("opt-350m");
        using var source = new DummyWeightSource(config);
        source.Validate(config);
        Assert.Equal(WeightSourceValidation.ExpectedTensors(config).Count(), source.Names.Count());
        Assert.True(source.Contains("model." + OptWeightNames.ProjectIn));
        Assert.False(source.Contains(OptWeightNames.FinalLayerNormWeight));
        Assert.Contains("no tensor lm_head.weight",
            Assert.Throws<InvalidDataException>(() => source.Shape(OptWeightNames.LmHead)).Message);
    }

    [Fact]
    public void ValuesDependOnSeedAndNameButNotOnLoadOrder()
    {
        var config = TestCheckpoints.Tiny();
        using var scope = torch.NewDisposeScope();
        using var a = new DummyWeightSource(config, seed: 5);
        using var b = new DummyWeightSource(config, seed: 5);
        using var other = new DummyWeightSource(config, seed: 6);

        var first = a.Load(Fc1, torch.float32, torch.CPU);
        b.Load("decoder.layers.0.fc1.weight", torch.float32, torch.CPU);
        Assert.Equal(Floats(first), Floats(b.Load(Fc1, torch.float32, torch.CPU)));
        Assert.NotEqual(Floats(first), Floats(other.Load(Fc1, torch.float32, torch.CPU)));
        Assert.NotEqual(Floats(first), Floats(a.Load("decoder.layers.0.fc1.weight", torch.float32, torch.CPU)));
    }

    [Fact]
    public void LayerNormsAreIdentityAndTheRestIsSmallNoise()
    {
        using var scope = torch.NewDisposeScope();
        using var source = new DummyWeightSource(OptConfigs.Named("opt-125m"), seed: 1);
        Assert.All(Floats(source.Load("decoder.layers.3.self_attn_layer_norm.weight", torch.float32, torch.CPU)),
            v => Assert.Equal(1f, v));
        Assert.All(Floats(source.Load("decoder.final_layer_norm.bias", torch.float32, torch.CPU)),
            v => Assert.Equal(0f, v));

        var fc1 = source.Load("decoder.layers.3.fc1.weight", torch.float16, torch.CPU);
        Assert.Equal(torch.float16, fc1.dtype);
        Assert.Equal([3072L, 768], fc1.shape);
        var asFloat = fc1.to(torch.float32);
        Assert.InRange(asFloat.std().item<float>(), 0.019f, 0.021f);
        Assert.InRange(asFloat.mean().item<float>(), -0.001f, 0.001f);
        Assert.True(asFloat.abs().max().item<float>() < 0.2f);
    }

    private static float[] Floats(torch.Tensor t) => t.data<float>().ToArray();
}
