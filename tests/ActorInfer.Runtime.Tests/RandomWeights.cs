using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

/// <summary>
/// Seeded random weights held in memory for every tensor a config has: normal * 0.05 for matrices and
/// embeddings, LayerNorm weights near 1, biases small. Test-only; the real dummy source lives in ActorInfer.Model.
/// </summary>
public sealed class RandomWeights : IWeightSource
{
    private readonly Dictionary<string, Tensor> _tensors = [];

    public RandomWeights(OptConfig config, long seed)
    {
        using var generator = new Generator((ulong)seed);
        var all = OptWeightNames.GlobalTensors(config)
            .Concat(Enumerable.Range(0, config.NumHiddenLayers)
                .SelectMany(l => OptWeightNames.LayerTensors(config).Select(t => (OptWeightNames.Layer(l, t.Suffix), t.Shape))));
        foreach (var (name, shape) in all)
        {
            var noise = randn(shape, generator: generator);
            Tensor t;
            if (name.EndsWith("layer_norm.weight", StringComparison.Ordinal)) t = noise.mul_(0.05).add_(1.0);
            else if (shape.Length == 1) t = noise.mul_(0.02);
            else t = noise.mul_(0.05);
            _tensors[name] = t;
        }
    }

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public long[] Shape(string name) =>
        _tensors.TryGetValue(name, out var t) ? t.shape : throw new InvalidDataException($"no tensor '{name}'");

    public Tensor Load(string name, ScalarType dtype, Device device) =>
        (_tensors.TryGetValue(name, out var t) ? t : throw new InvalidDataException($"no tensor '{name}'")).to(dtype, device, copy: true);

    public void Dispose()
    {
        foreach (var t in _tensors.Values) t.Dispose();
    }
}

public static class TestConfigs
{
    public static OptConfig PreLn { get; } = new()
    {
        Name = "test-pre-ln", VocabSize = 300, HiddenSize = 96, NumHiddenLayers = 3, NumAttentionHeads = 6, FfnDim = 192,
        MaxPositionEmbeddings = 64, WordEmbedProjDim = 96, TorchDtype = "float32",
    };

    /// <summary>opt-350m's shape in small: post-LayerNorm with project_in / project_out.</summary>
    public static OptConfig PostLn { get; } = PreLn with { Name = "test-post-ln", DoLayerNormBefore = false, WordEmbedProjDim = 48 };
}
