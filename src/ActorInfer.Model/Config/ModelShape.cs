namespace ActorInfer.Model.Config;

/// <summary>
/// Sizes derived from a <see cref="ModelConfig"/>: parameter counts and byte counts of weights, activations and
/// the KV cache. Counts come from the architecture's tensor lists, so they match what is loaded.
/// </summary>
public sealed class ModelShape
{
    public ModelShape(ModelConfig config)
    {
        Config = config ?? throw new ArgumentNullException(nameof(config));
        var architecture = config.Architecture;
        ParametersPerLayer = architecture.LayerTensors().Sum(t => Elements(t.Shape));
        GlobalParameters = architecture.GlobalTensors().Sum(t => Elements(t.Shape));
    }

    public ModelConfig Config { get; }

    /// <summary>Parameters of one decoder layer (attention, FFN, their LayerNorms).</summary>
    public long ParametersPerLayer { get; }

    /// <summary>Parameters outside the decoder layers: embeddings, projections, final norm, and the head when it is not tied.</summary>
    public long GlobalParameters { get; }

    public long LayerParameters => ParametersPerLayer * Config.NumHiddenLayers;

    public long TotalParameters => LayerParameters + GlobalParameters;

    public long LayerBytes(int elementSize) => ParametersPerLayer * CheckedSize(elementSize);

    public long GlobalBytes(int elementSize) => GlobalParameters * CheckedSize(elementSize);

    public long TotalBytes(int elementSize) => TotalParameters * CheckedSize(elementSize);

    /// <summary>Keys plus values one token adds to one layer's cache (key/value heads times head_dim each).</summary>
    public long KvCacheBytesPerTokenPerLayer(int elementSize) => 2L * Config.KeyValueDim * CheckedSize(elementSize);

    /// <summary>The whole KV cache for <paramref name="batch"/> sequences of <paramref name="tokens"/> positions.</summary>
    public long KvCacheBytes(int batch, int tokens, int elementSize) =>
        KvCacheBytesPerTokenPerLayer(elementSize) * Config.NumHiddenLayers * NonNegative(batch) * NonNegative(tokens);

    /// <summary>One token's hidden state between layers.</summary>
    public long HiddenBytesPerToken(int elementSize) => (long)Config.HiddenSize * CheckedSize(elementSize);

    /// <summary>Bytes per element of a checkpoint dtype name ("float16", "bfloat16", "float32").</summary>
    public static int ElementSize(string torchDtype) => torchDtype switch
    {
        "float16" or "bfloat16" => 2,
        "float32" => 4,
        _ => throw new ArgumentException($"unknown dtype '{torchDtype}'", nameof(torchDtype)),
    };

    public static long Elements(IReadOnlyList<long> shape)
    {
        var n = 1L;
        foreach (var d in shape) n = checked(n * d);
        return n;
    }

    private static long CheckedSize(int elementSize) => elementSize > 0
        ? elementSize
        : throw new ArgumentOutOfRangeException(nameof(elementSize), elementSize, "must be positive");

    private static long NonNegative(int count) => count >= 0
        ? count
        : throw new ArgumentOutOfRangeException(nameof(count), count, "must not be negative");
}
