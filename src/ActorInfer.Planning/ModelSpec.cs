namespace ActorInfer.Planning;

/// <summary>
/// A decoder-only transformer described by plain numbers: all the cost model needs to know of a model. The
/// constructor's numbers describe OPT; other architectures (LLaMA: grouped-query attention, a gated MLP, no learned
/// positions) set their key/value heads and their own parameter counts on top.
/// </summary>
public sealed record ModelSpec
{
    public string Name { get; }
    public int NumLayers { get; }
    public int HiddenSize { get; }
    public int NumHeads { get; }
    public int FfnSize { get; }
    public int VocabSize { get; }
    /// <summary>Learned position embeddings (OPT: 2048, plus its offset of 2).</summary>
    public int MaxPositions { get; }
    /// <summary>Bytes of one stored element: 2 for float16.</summary>
    public int BytesPerElement { get; }

    public ModelSpec(string name, int numLayers, int hiddenSize, int numHeads, int ffnSize,
        int vocabSize = 50272, int maxPositions = 2048, int bytesPerElement = 2)
    {
        if (string.IsNullOrWhiteSpace(name))
            throw new ArgumentException("model name must not be empty");
        Positive(numLayers, "number of layers");
        Positive(hiddenSize, "hidden size");
        Positive(numHeads, "number of attention heads");
        Positive(ffnSize, "FFN size");
        Positive(vocabSize, "vocabulary size");
        Positive(maxPositions, "maximum positions");
        Positive(bytesPerElement, "bytes per element");
        if (hiddenSize % numHeads != 0)
            throw new ArgumentException($"hidden size {hiddenSize} is not a multiple of the {numHeads} heads");
        Name = name;
        NumLayers = numLayers;
        HiddenSize = hiddenSize;
        NumHeads = numHeads;
        FfnSize = ffnSize;
        VocabSize = vocabSize;
        MaxPositions = maxPositions;
        BytesPerElement = bytesPerElement;
        WeightLayout = WeightLayout.Opt(hiddenSize, ffnSize, vocabSize, maxPositions + 2L);
    }

    /// <summary>The weights as the groups that are placed over the tiers (<see cref="WeightPlacement"/>); OPT's by default.</summary>
    public WeightLayout WeightLayout { get; init; }

    /// <summary>Key/value heads (the cache's width is these times <see cref="HeadDim"/>); OPT: every head.</summary>
    public int KeyValueHeads
    {
        get => _keyValueHeads ?? NumHeads;
        init => _keyValueHeads = value > 0 && NumHeads % value == 0
            ? value
            : throw new ArgumentException($"{value} key/value heads cannot serve {NumHeads} attention heads");
    }

    /// <summary>The width of one head; OPT: hidden size / heads.</summary>
    public int HeadDim
    {
        get => _headDim ?? HiddenSize / NumHeads;
        init => _headDim = value > 0 ? value : throw new ArgumentException($"head dimension must be positive, got {value}");
    }

    /// <summary>The width of one token's keys (or values) in one layer.</summary>
    public long KeyValueWidth => (long)KeyValueHeads * HeadDim;

    /// <summary>
    /// Whether the runtime on this machine attends a compressed cache on the CPU from its codes, holding no expanded working
    /// copy there (AVX-512, heads of whole groups). False where not known: the copies are then charged.
    /// </summary>
    public bool CpuAttendsCacheCodes { get; init; }

    /// <summary>The architecture's own count of one layer's parameters, when it is not OPT's.</summary>
    public long? LayerParameterCount { get; init; }

    /// <summary>The architecture's own count of the parameters outside the layers (embeddings, final norm, an untied head).</summary>
    public long? GlobalParameterCount { get; init; }

    /// <summary>The architecture's own count of one layer's matrix parameters (each a multiply-accumulate per token).</summary>
    public long? LayerMatrixParameterCount { get; init; }

    /// <summary>A gated MLP (LLaMA's gate and up projections, multiplied); OPT's is not.</summary>
    public bool GatedFfn { get; init; }

    private readonly int? _keyValueHeads;
    private readonly int? _headDim;

    /// <summary>
    /// Parameters of one decoder layer: OPT's are Q, K, V and output projections (4 h^2 + 4 h), the two FFN matrices
    /// (2 h f + f + h) and two LayerNorms (4 h).
    /// </summary>
    public long LayerParameters
    {
        get
        {
            if (LayerParameterCount is { } count) return count;
            long h = HiddenSize, f = FfnSize;
            return 4 * h * h + 4 * h + 2 * h * f + f + h + 4 * h;
        }
    }

    public long LayerWeightBytes => LayerParameters * BytesPerElement;

    /// <summary>OPT: token and position embeddings (the output projection is tied to the token embedding) and the final LayerNorm.</summary>
    public long EmbeddingBytes => (GlobalParameterCount ?? (long)VocabSize * HiddenSize + (long)(MaxPositions + 2) * HiddenSize + 2L * HiddenSize) * BytesPerElement;

    public long TotalWeightBytes => LayerWeightBytes * NumLayers + EmbeddingBytes;

    /// <summary>The weight bytes placed on the tiers: with a tied head, the output layer holds a copy of the token embeddings.</summary>
    public long PlacedWeightBytes => WeightLayout.TotalElements(NumLayers) * BytesPerElement;

    /// <summary>
    /// The bytes per tier that weight fractions place (uncompressed), of the whole model and of one decoder layer: by
    /// FlexGen's rule within each group, or <paramref name="spread"/> over the model as a whole.
    /// </summary>
    public RealizedWeights RealizeWeights(TierFractions weights, bool spread = false) =>
        WeightPlacement.Realize(WeightLayout, NumLayers, BytesPerElement, weights, spread);

    /// <summary>Multiply-accumulate FLOPs of one layer's matrix products for one token: 2 x (4 h^2 + 2 h f).</summary>
    public double LayerMatmulFlopsPerToken => LayerMatrixParameterCount is { } matrices
        ? 2.0 * matrices
        : 2.0 * (4.0 * HiddenSize * HiddenSize + 2.0 * HiddenSize * FfnSize);

    /// <summary>Bytes of one token's key and value in one layer (the key/value heads' width each).</summary>
    public long CacheBytesPerTokenPerLayer => 2L * KeyValueWidth * BytesPerElement;

    /// <summary>Bytes of one token's hidden state.</summary>
    public long HiddenBytesPerToken => (long)HiddenSize * BytesPerElement;

    private static void Positive(int value, string what)
    {
        if (value <= 0)
            throw new ArgumentException($"{what} must be positive, got {value}");
    }
}

/// <summary>The generation task the block serves: every sequence has a prompt of the same length and generates the same count.</summary>
public sealed record Workload
{
    public int PromptLength { get; }
    public int GenerationLength { get; }

    public Workload(int promptLength, int generationLength)
    {
        if (promptLength <= 0)
            throw new ArgumentException($"prompt length must be positive, got {promptLength}");
        if (generationLength <= 0)
            throw new ArgumentException($"generation length must be positive, got {generationLength}");
        PromptLength = promptLength;
        GenerationLength = generationLength;
    }

    public int TotalLength => PromptLength + GenerationLength;

    /// <summary>
    /// The mean context a decoding step attends over. Steps 1..n-1 attend over s+1..s+n-1 tokens; their mean is s + n/2.
    /// Every decoding cost is linear in the context, so the mean step has the mean cost of each term.
    /// </summary>
    public double MeanDecodeContext => PromptLength + GenerationLength / 2.0;

    public int DecodeSteps => GenerationLength - 1;
}

/// <summary>The OPT family's published shapes (float16, vocabulary 50272, 2048 positions).</summary>
public static class OptModels
{
    public static IReadOnlyList<ModelSpec> All { get; } =
    [
        new("opt-125m", 12, 768, 12, 3072),
        new("opt-350m", 24, 1024, 16, 4096),
        new("opt-1.3b", 24, 2048, 32, 8192),
        new("opt-2.7b", 32, 2560, 32, 10240),
        new("opt-6.7b", 32, 4096, 32, 16384),
        new("opt-13b", 40, 5120, 40, 20480),
        new("opt-30b", 48, 7168, 56, 28672),
        new("opt-66b", 64, 9216, 72, 36864),
        new("opt-175b", 96, 12288, 96, 49152),
    ];

    /// <summary>By name, case-insensitive, with or without the "facebook/" prefix; null when unknown.</summary>
    public static ModelSpec? Find(string name)
    {
        var key = name.Trim();
        var slash = key.LastIndexOf('/');
        if (slash >= 0)
            key = key[(slash + 1)..];
        return All.FirstOrDefault(m => string.Equals(m.Name, key, StringComparison.OrdinalIgnoreCase));
    }

    public static ModelSpec Get(string name) =>
        Find(name) ?? throw new ArgumentException(
            $"unknown model '{name}'; known: {string.Join(", ", All.Select(m => m.Name))}, or a directory with config.json");
}
