using System.Text.Json;

namespace ActorInfer.Model.Config;

/// <summary>Where <see cref="OptConfig"/>s come from: a Hugging Face <c>config.json</c> or a published size name.</summary>
public static class OptConfigs
{
    private const int OptVocabSize = 50272;
    private const int OptMaxPositions = 2048;

    private static readonly OptConfig[] Published =
    [
        Size("opt-125m", layers: 12, hidden: 768, heads: 12, ffn: 3072),
        Size("opt-350m", layers: 24, hidden: 1024, heads: 16, ffn: 4096) with
        {
            WordEmbedProjDim = 512,
            DoLayerNormBefore = false,
        },
        Size("opt-1.3b", layers: 24, hidden: 2048, heads: 32, ffn: 8192),
        Size("opt-2.7b", layers: 32, hidden: 2560, heads: 32, ffn: 10240),
        Size("opt-6.7b", layers: 32, hidden: 4096, heads: 32, ffn: 16384),
        Size("opt-13b", layers: 40, hidden: 5120, heads: 40, ffn: 20480),
        Size("opt-30b", layers: 48, hidden: 7168, heads: 56, ffn: 28672),
        Size("opt-66b", layers: 64, hidden: 9216, heads: 72, ffn: 36864),
        Size("opt-175b", layers: 96, hidden: 12288, heads: 96, ffn: 49152),
    ];

    /// <summary>The published size names, smallest first ("opt-125m" ... "opt-175b").</summary>
    public static IReadOnlyList<string> NamedSizes { get; } = Published.Select(c => c.Name).ToArray();

    /// <summary>The published shape of a named size; the name is case-insensitive and may omit the "opt-" prefix.</summary>
    public static OptConfig Named(string name) =>
        TryNamed(name ?? throw new ArgumentNullException(nameof(name))) ?? throw new ArgumentException(
            $"unknown OPT size '{name}'; known sizes: {string.Join(", ", NamedSizes)}", nameof(name));

    /// <summary>An OPT model as <see cref="ModelConfigs.Resolve"/> finds it: a named size, a directory holding <c>config.json</c>, or a <c>config.json</c> path.</summary>
    public static OptConfig Resolve(string nameOrPath) =>
        ModelConfigs.Resolve(nameOrPath) as OptConfig ?? throw new ArgumentException($"'{nameOrPath}' is not an OPT model", nameof(nameOrPath));

    internal static OptConfig? TryNamed(string name)
    {
        var wanted = name.Trim();
        if (wanted.StartsWith("facebook/", StringComparison.OrdinalIgnoreCase)) wanted = wanted["facebook/".Length..];
        if (!wanted.StartsWith("opt-", StringComparison.OrdinalIgnoreCase)) wanted = "opt-" + wanted;
        return Published.FirstOrDefault(c => string.Equals(c.Name, wanted, StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>Parses a Hugging Face OPT <c>config.json</c>; every problem is an <see cref="InvalidDataException"/> naming the file and key.</summary>
    public static OptConfig FromJson(string path) => ConfigReader.ReadFile(path, Parse);

    internal static OptConfig Parse(ConfigReader json, string path)
    {
        var modelType = json.OptionalString("model_type");
        if (modelType != "opt")
            throw json.Error($"is not an OPT config: model_type is '{modelType ?? "(absent)"}'");
        var activation = json.OptionalString("activation_function") ?? "relu";
        if (activation != "relu")
            throw json.Error($"has activation_function '{activation}'; OPT uses 'relu'");

        var hidden = json.PositiveInt("hidden_size");
        var heads = json.PositiveInt("num_attention_heads");
        if (hidden % heads != 0)
            throw json.Error($"has hidden_size {hidden}, which num_attention_heads {heads} does not divide");
        var dtype = json.OptionalString("dtype") ?? json.OptionalString("torch_dtype") ?? "float16";
        if (dtype is not ("float16" or "bfloat16" or "float32"))
            throw json.Error($"has dtype '{dtype}'; expected float16, bfloat16 or float32");

        return new OptConfig
        {
            Name = Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(path))) ?? "opt",
            VocabSize = json.PositiveInt("vocab_size"),
            HiddenSize = hidden,
            NumHiddenLayers = json.PositiveInt("num_hidden_layers"),
            NumAttentionHeads = heads,
            FfnDim = json.PositiveInt("ffn_dim"),
            MaxPositionEmbeddings = json.PositiveInt("max_position_embeddings"),
            WordEmbedProjDim = json.Has("word_embed_proj_dim") ? json.PositiveInt("word_embed_proj_dim") : hidden,
            DoLayerNormBefore = json.Bool("do_layer_norm_before", true),
            EnableBias = json.Bool("enable_bias", true),
            LayerNormElementwiseAffine = json.Bool("layer_norm_elementwise_affine", true),
            RemoveFinalLayerNorm = json.Bool("_remove_final_layer_norm", false),
            PadTokenId = json.TokenId("pad_token_id", 1),
            BosTokenId = json.TokenId("bos_token_id", 2),
            EosTokenId = json.TokenId("eos_token_id", 2),
            TorchDtype = dtype,
        };
    }

    private static OptConfig Size(string name, int layers, int hidden, int heads, int ffn) => new()
    {
        Name = name,
        VocabSize = OptVocabSize,
        HiddenSize = hidden,
        NumHiddenLayers = layers,
        NumAttentionHeads = heads,
        FfnDim = ffn,
        MaxPositionEmbeddings = OptMaxPositions,
        WordEmbedProjDim = hidden,
    };
}
