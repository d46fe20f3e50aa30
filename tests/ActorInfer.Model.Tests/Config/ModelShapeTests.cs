using System.Globalization;
using ActorInfer.Model.Config;
using TorchSharp;

namespace ActorInfer.Model.Tests.Config;

public sealed class ModelShapeTests
{
    [Theory]
    [InlineData("opt-175b", 0.01)]
    [InlineData("opt-6.7b", 0.01)]
    [InlineData("opt-66b", 0.01)]
    [InlineData("opt-30b", 0.01)]
    [InlineData("opt-13b", 0.02)]
    [InlineData("opt-1.3b", 0.02)]
    [InlineData("opt-2.7b", 0.03)]
    [InlineData("opt-125m", 0.01)]
    // The name rounds 331M up: the embeddings are only 512 wide.
    [InlineData("opt-350m", 0.06)]
    public void EachNamedSizeHasAboutTheParametersItsNameSays(string name, double tolerance)
    {
        var nominal = NominalParameters(name);
        var actual = new ModelShape(OptConfigs.Named(name)).TotalParameters;
        Assert.InRange(actual, nominal * (1 - tolerance), nominal * (1 + tolerance));
    }

    [Fact]
    public void CountsOneLayerByHand()
    {
        var shape = new ModelShape(OptConfigs.Named("opt-125m"));
        const long h = 768, f = 3072;
        Assert.Equal(4 * (h * h + h) + (f * h + f) + (h * f + h) + 4 * h, shape.ParametersPerLayer);
        Assert.Equal(50272 * h + 2050 * h + 2 * h, shape.GlobalParameters);
        Assert.Equal(shape.ParametersPerLayer * 2, shape.LayerBytes(2));
        Assert.Equal(2 * h * 2, shape.KvCacheBytesPerTokenPerLayer(2));
        Assert.Equal(2 * h * 4 * 12 * 3 * 10, shape.KvCacheBytes(batch: 3, tokens: 10, elementSize: 4));
        Assert.Equal(h * 2, shape.HiddenBytesPerToken(2));
        Assert.Equal(shape.TotalParameters * 2, shape.TotalBytes(ModelShape.ElementSize("float16")));
    }

    [Fact]
    public void CountsProjectionsAndDropsAbsentTensors()
    {
        var opt350 = new ModelShape(OptConfigs.Named("opt-350m"));
        Assert.Equal(50272L * 512 + 2050L * 1024 + 2 * 1024L * 512, opt350.GlobalParameters);

        var bare = OptConfigs.Named("opt-125m") with { EnableBias = false, LayerNormElementwiseAffine = false };
        Assert.Equal(4 * 768L * 768 + 2 * 3072L * 768, new ModelShape(bare).ParametersPerLayer);
    }

    public static TheoryData<string> NamedSizes() => [.. OptConfigs.NamedSizes];

    [Theory]
    [MemberData(nameof(NamedSizes))]
    public void EveryNamedSizeOnTheMetaDeviceMatchesTheArithmetic(string name)
    {
        var config = OptConfigs.Named(name);
        var h = (long)config.HiddenSize;
        // 4 h^2 attention + 2 h f FFN, with biases (4 h + f + h) and two LayerNorms (4 h).
        Assert.Equal(4 * h * h + 2 * h * config.FfnDim + 9 * h + config.FfnDim, new ModelShape(config).ParametersPerLayer);
        MetaMatchesArithmetic(config);
    }

    [Fact]
    public void Opt175bLayerOnTheMetaDeviceMatchesTheArithmetic()
    {
        var config = OptConfigs.Named("opt-175b");
        MetaMatchesArithmetic(config);
        Assert.Equal(2L * (12L * 12288 * 12288 + 13L * 12288), new ModelShape(config).LayerBytes(2));
    }

    private static void MetaMatchesArithmetic(OptConfig config)
    {
        var shape = new ModelShape(config);
        long elements = 0, bytes = 0;
        using var scope = torch.NewDisposeScope();
        foreach (var (suffix, dims) in OptWeightNames.LayerTensors(config))
        {
            var tensor = torch.empty(dims, torch.float16, torch.META);
            Assert.True(tensor.is_meta, suffix);
            Assert.Equal(dims, tensor.shape);
            elements += tensor.numel();
            bytes += tensor.numel() * tensor.element_size();
        }
        Assert.Equal(shape.ParametersPerLayer, elements);
        Assert.Equal(shape.LayerBytes(2), bytes);
        if (config.Name == "opt-175b")
            // 12 h^2 + 13 h for h = 12288: the figure FlexGen's cost model uses for OPT-175B.
            Assert.Equal(12L * 12288 * 12288 + 13L * 12288, shape.ParametersPerLayer);

        long globalBytes = 0;
        foreach (var (_, dims) in OptWeightNames.GlobalTensors(config))
        {
            var tensor = torch.empty(dims, torch.float16, torch.META);
            globalBytes += tensor.numel() * tensor.element_size();
        }
        Assert.Equal(shape.GlobalBytes(2), globalBytes);
    }

    private static double NominalParameters(string name)
    {
        var size = name["opt-".Length..];
        var scale = size[^1] == 'b' ? 1e9 : 1e6;
        return double.Parse(size[..^1], CultureInfo.InvariantCulture) * scale;
    }
}
