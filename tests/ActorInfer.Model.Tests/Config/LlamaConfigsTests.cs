using ActorInfer.Model.Config;

namespace ActorInfer.Model.Tests.Config;

public sealed class LlamaConfigsTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "actorinfer-llama-config-tests", Guid.NewGuid().ToString("N"));

    public LlamaConfigsTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Published parameter counts: the layers' and the embeddings' tensors, a separate head each.</summary>
    [Theory]
    [InlineData("llama-2-7b", 6_738_415_616L)]
    [InlineData("llama-2-13b", 13_015_864_320L)]
    [InlineData("llama-2-70b", 68_976_648_192L)]
    [InlineData("llama-3.1-8b", 8_030_261_248L)]
    [InlineData("llama-3.1-70b", 70_553_706_496L)]
    [InlineData("mistral-7b", 7_241_732_096L)]
    public void Named_sizes_have_their_published_parameter_counts(string name, long parameters)
    {
        var config = Assert.IsType<LlamaConfig>(ModelConfigs.Named(name));
        Assert.Equal(parameters, new ModelShape(config).TotalParameters);
        Assert.Equal(config, ModelConfigs.Resolve(name.ToUpperInvariant()));
    }

    [Fact]
    public void The_cache_of_llama_3_1_8b_at_8192_tokens_is_one_gibibyte_per_sequence_in_float16()
    {
        // 32 layers x (keys + values) x 8 key/value heads x 128 x 2 bytes x 8,192 tokens = 2^30: a quarter of what 32 heads would hold.
        var shape = new ModelShape(ModelConfigs.Named("llama-3.1-8b"));
        Assert.Equal(1L << 30, shape.KvCacheBytes(batch: 1, tokens: 8192, elementSize: 2));
    }

    [Fact]
    public void The_fixture_config_reads_as_transformers_5_writes_it()
    {
        var config = Assert.IsType<LlamaConfig>(ModelConfigs.Resolve(Fixtures.HfLlama("llama-tiny")));
        Assert.Equal((4, 2, 16, 176, false), (config.NumAttentionHeads, config.NumKeyValueHeads, config.HeadDim, config.IntermediateSize, config.TieWordEmbeddings));
        Assert.Equal(new RopeSettings { Theta = 10000 }, config.Rope);
        Assert.Equal((0, 1), (config.BosTokenId, config.EosTokenId));
        var tied = Assert.IsType<LlamaConfig>(ModelConfigs.Resolve(Fixtures.HfLlama("llama-tiny-tied")));
        Assert.Equal((500000.0, true), (tied.Rope.Theta, tied.TieWordEmbeddings));
    }

    [Fact]
    public void Transformers_4_keys_give_the_same_rope()
    {
        var config = Parse("""
            {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 1, "num_hidden_layers": 2,
             "intermediate_size": 96, "vocab_size": 128, "max_position_embeddings": 256, "rope_theta": 500000.0,
             "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 64}, "eos_token_id": [5, 6], "bos_token_id": 4}
            """);
        Assert.Equal(new RopeSettings { Theta = 500000, Type = "llama3", Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4, OriginalMaxPositionEmbeddings = 64 }, config.Rope);
        Assert.Equal(5, config.EosTokenId);
        var linear = Parse("""
            {"architectures": ["MistralForCausalLM"], "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
             "intermediate_size": 96, "vocab_size": 128, "max_position_embeddings": 256, "rope_scaling": {"type": "linear", "factor": 2}}
            """);
        Assert.Equal(("mistral", "linear", 2.0, 4), (linear.Family, linear.Rope.Type, linear.Rope.Factor, linear.NumKeyValueHeads));
    }

    [Fact]
    public void Qwen2_has_biases_on_queries_keys_and_values_only()
    {
        var config = Parse("""
            {"model_type": "qwen2", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
             "intermediate_size": 96, "vocab_size": 128, "max_position_embeddings": 256, "tie_word_embeddings": true}
            """);
        Assert.Equal((true, false, true), (config.QkvBias, config.OutputBias, config.TieWordEmbeddings));
        var suffixes = config.Architecture.LayerTensors().Select(t => t.Suffix).ToArray();
        Assert.Contains("self_attn.k_proj.bias", suffixes);
        Assert.DoesNotContain("self_attn.o_proj.bias", suffixes);
        Assert.DoesNotContain(config.Architecture.GlobalTensors(), t => t.Name == "lm_head.weight");
    }

    [Theory]
    [InlineData("\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}", "rope type 'yarn'")]
    [InlineData("\"num_key_value_heads\": 3", "num_key_value_heads 3")]
    [InlineData("\"hidden_act\": \"gelu\"", "hidden_act 'gelu'")]
    [InlineData("\"rope_scaling\": {\"rope_type\": \"linear\"}", "'factor'")]
    [InlineData("\"bos_token_id\": 500", "bos_token_id 500")]
    public void Bad_configs_are_refused_naming_the_key(string extra, string named)
    {
        var error = Assert.Throws<InvalidDataException>(() => Parse($$"""
            {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
             "intermediate_size": 96, "vocab_size": 128, "max_position_embeddings": 256, {{extra}}}
            """));
        Assert.Contains(named, error.Message);
    }

    [Fact]
    public void An_unknown_model_type_names_the_supported_ones()
    {
        var error = Assert.Throws<InvalidDataException>(() => Parse("""{"model_type": "gpt2", "n_embd": 64}"""));
        Assert.Contains("model_type 'gpt2'", error.Message);
        Assert.Contains("opt, llama, mistral, qwen2", error.Message);
    }

    private LlamaConfig Parse(string json)
    {
        var path = Path.Combine(_dir, "config.json");
        File.WriteAllText(path, json);
        return Assert.IsType<LlamaConfig>(ModelConfigs.FromJson(path));
    }
}
