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

    public RandomWeights(ModelConfig config, long seed)
    {
        using var generator = new Generator((ulong)seed);
        var architecture = config.Architecture;
        foreach (var (name, shape) in WeightSourceValidation.ExpectedTensors(config))
        {
            var noise = randn(shape, generator: generator);
            Tensor t;
            if (architecture.IsNorm(name) && name.EndsWith(".weight", StringComparison.Ordinal)) t = noise.mul_(0.05).add_(1.0);
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

    /// <summary>
    /// A Llama of its own shape: 3 layers, 6 query heads sharing 2 key/value heads, an explicit head_dim of 16 (the query
    /// heads span 96, wider than the hidden 80), a separate head, Llama 3.1's frequency scaling.
    /// </summary>
    public static LlamaConfig Llama { get; } = new()
    {
        Name = "test-llama", VocabSize = 300, HiddenSize = 80, NumHiddenLayers = 3, NumAttentionHeads = 6, KeyValueHeads = 2,
        ExplicitHeadDim = 16, IntermediateSize = 144, MaxPositionEmbeddings = 64, RmsNormEps = 1e-5, TorchDtype = "float32",
        BosTokenId = 1, EosTokenId = 2, PadTokenId = 0,
        Rope = new RopeSettings { Theta = 10000, Type = "llama3", Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4, OriginalMaxPositionEmbeddings = 16 },
    };

    /// <summary>Qwen2's habits: biases on Q, K and V only, a head tied to the embeddings, linear rope scaling, no grouping.</summary>
    public static LlamaConfig QwenLike { get; } = Llama with
    {
        Name = "test-qwen-like", Family = "qwen2", HiddenSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 4, KeyValueHeads = 4,
        ExplicitHeadDim = null, IntermediateSize = 96, QkvBias = true, MlpBias = true, TieWordEmbeddings = true,
        Rope = new RopeSettings { Theta = 1000, Type = "linear", Factor = 2 },
    };
}
