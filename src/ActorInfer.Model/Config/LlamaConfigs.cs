namespace ActorInfer.Model.Config;

/// <summary>LLaMA-family configs: parsed from config.json (transformers 4 and 5 spellings), or a published size by name.</summary>
public static class LlamaConfigs
{
    /// <summary>The model_type values read as LLaMA-family models, and the architectures that imply them.</summary>
    public static IReadOnlyDictionary<string, string> Architectures { get; } = new Dictionary<string, string>
    {
        ["LlamaForCausalLM"] = "llama",
        ["MistralForCausalLM"] = "mistral",
        ["Qwen2ForCausalLM"] = "qwen2",
    };

    private static readonly RopeSettings Llama31Rope = new()
    {
        Theta = 500000, Type = "llama3", Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4, OriginalMaxPositionEmbeddings = 8192,
    };

    internal static readonly LlamaConfig[] Published =
    [
        Size("llama-2-7b", layers: 32, hidden: 4096, heads: 32, kvHeads: 32, mlp: 11008, vocab: 32000, context: 4096),
        Size("llama-2-13b", layers: 40, hidden: 5120, heads: 40, kvHeads: 40, mlp: 13824, vocab: 32000, context: 4096),
        Size("llama-2-70b", layers: 80, hidden: 8192, heads: 64, kvHeads: 8, mlp: 28672, vocab: 32000, context: 4096),
        Size("llama-3.1-8b", layers: 32, hidden: 4096, heads: 32, kvHeads: 8, mlp: 14336, vocab: 128256, context: 131072) with
        {
            Rope = Llama31Rope, BosTokenId = 128000, EosTokenId = 128001, PadTokenId = 128001,
        },
        Size("llama-3.1-70b", layers: 80, hidden: 8192, heads: 64, kvHeads: 8, mlp: 28672, vocab: 128256, context: 131072) with
        {
            Rope = Llama31Rope, BosTokenId = 128000, EosTokenId = 128001, PadTokenId = 128001,
        },
        Size("mistral-7b", layers: 32, hidden: 4096, heads: 32, kvHeads: 8, mlp: 14336, vocab: 32000, context: 32768) with
        {
            Family = "mistral",
        },
    ];

    internal static LlamaConfig? TryNamed(string name)
    {
        var wanted = name.Trim();
        var slash = wanted.LastIndexOf('/');
        if (slash >= 0) wanted = wanted[(slash + 1)..];
        return Published.FirstOrDefault(c => string.Equals(c.Name, wanted, StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>Whether a config.json's model_type (or, without one, its architectures) names a LLaMA-family model.</summary>
    internal static string? Family(ConfigReader json)
    {
        var modelType = json.OptionalString("model_type");
        if (modelType is not null) return Architectures.Values.Contains(modelType) ? modelType : null;
        return json.Strings("architectures").Select(a => Architectures.GetValueOrDefault(a)).FirstOrDefault(f => f is not null);
    }

    internal static LlamaConfig Parse(ConfigReader json, string path)
    {
        var family = Family(json) ?? throw json.Error("is not a LLaMA-family config");
        var activation = json.OptionalString("hidden_act") ?? "silu";
        if (activation != "silu") throw json.Error($"has hidden_act '{activation}'; the LLaMA family uses 'silu'");
        var hidden = json.PositiveInt("hidden_size");
        var heads = json.PositiveInt("num_attention_heads");
        var kvHeads = json.Has("num_key_value_heads") ? json.PositiveInt("num_key_value_heads") : heads;
        if (heads % kvHeads != 0)
            throw json.Error($"has num_key_value_heads {kvHeads}, which does not divide num_attention_heads {heads}");
        int? headDim = json.Has("head_dim") ? json.PositiveInt("head_dim") : null;
        if (headDim is null && hidden % heads != 0)
            throw json.Error($"has hidden_size {hidden}, which num_attention_heads {heads} does not divide (and no head_dim)");
        if ((headDim ?? hidden / heads) % 2 != 0) throw json.Error("has an odd head_dim; rotary embeddings need an even one");
        var dtype = json.OptionalString("dtype") ?? json.OptionalString("torch_dtype") ?? "float16";
        if (dtype is not ("float16" or "bfloat16" or "float32"))
            throw json.Error($"has dtype '{dtype}'; expected float16, bfloat16 or float32");
        // Qwen2 puts biases on the query, key and value projections only, and has no attention_bias key.
        var attentionBias = json.Bool("attention_bias", false);
        var eos = json.FirstTokenId("eos_token_id", 2);
        var config = new LlamaConfig
        {
            Name = Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(path))) ?? family,
            Family = family,
            VocabSize = json.PositiveInt("vocab_size"),
            HiddenSize = hidden,
            NumHiddenLayers = json.PositiveInt("num_hidden_layers"),
            NumAttentionHeads = heads,
            KeyValueHeads = kvHeads,
            ExplicitHeadDim = headDim,
            IntermediateSize = json.PositiveInt("intermediate_size"),
            MaxPositionEmbeddings = json.PositiveInt("max_position_embeddings"),
            RmsNormEps = json.Double("rms_norm_eps", 1e-6),
            Rope = Rope(json),
            QkvBias = family == "qwen2" || attentionBias,
            OutputBias = family != "qwen2" && attentionBias,
            MlpBias = json.Bool("mlp_bias", false),
            TieWordEmbeddings = json.Bool("tie_word_embeddings", false),
            BosTokenId = json.FirstTokenId("bos_token_id", 1),
            EosTokenId = eos,
            // Pads are masked: any id in the vocabulary serves, and most LLaMA checkpoints name none.
            PadTokenId = json.FirstTokenId("pad_token_id", eos),
            TorchDtype = dtype,
        };
        foreach (var (key, id) in new[] { ("bos_token_id", config.BosTokenId), ("eos_token_id", config.EosTokenId), ("pad_token_id", config.PadTokenId) })
            if (id >= config.VocabSize) throw json.Error($"has {key} {id}, outside the vocabulary of {config.VocabSize}");
        return config;
    }

    /// <summary>transformers 5's rope_parameters, or the older top-level rope_theta with rope_scaling.</summary>
    private static RopeSettings Rope(ConfigReader json)
    {
        var parameters = json.Object("rope_parameters");
        var theta = parameters is { } p && p.Has("rope_theta") ? p.Double("rope_theta", 10000) : json.Double("rope_theta", 10000);
        var scaling = parameters ?? json.Object("rope_scaling");
        if (scaling is not { } s) return new RopeSettings { Theta = theta };
        var type = s.OptionalString("rope_type") ?? s.OptionalString("type") ?? "default";
        if (type is not ("default" or "linear" or "llama3"))
            throw json.Error($"has rope type '{type}'; supported are default, linear and llama3");
        var rope = new RopeSettings { Theta = theta, Type = type };
        if (type == "default") return rope;
        var factor = s.Double("factor", 0);
        if (factor <= 0) throw s.Error("lacks a positive 'factor'");
        rope = rope with { Factor = factor };
        if (type != "llama3") return rope;
        rope = rope with
        {
            LowFreqFactor = s.Double("low_freq_factor", 1),
            HighFreqFactor = s.Double("high_freq_factor", 4),
            OriginalMaxPositionEmbeddings = s.Int("original_max_position_embeddings", 8192),
        };
        if (rope.HighFreqFactor <= rope.LowFreqFactor) throw s.Error("has high_freq_factor not above low_freq_factor");
        return rope;
    }

    private static LlamaConfig Size(string name, int layers, int hidden, int heads, int kvHeads, int mlp, int vocab, int context) => new()
    {
        Name = name,
        VocabSize = vocab,
        HiddenSize = hidden,
        NumHiddenLayers = layers,
        NumAttentionHeads = heads,
        KeyValueHeads = kvHeads,
        IntermediateSize = mlp,
        MaxPositionEmbeddings = context,
        RmsNormEps = 1e-5,
        BosTokenId = 1,
        EosTokenId = 2,
        PadTokenId = 2,
    };
}
