using ActorInfer.Model.Config;

namespace ActorInfer.Model.Tests.Config;

public sealed class OptConfigsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("actorinfer-config-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void ReadsTheFixtureConfigs()
    {
        var tiny = OptConfigs.FromJson(Path.Combine(Fixtures.HfOpt("opt-tiny"), "config.json"));
        Assert.Equal(
            new OptConfig
            {
                Name = "opt-tiny", VocabSize = 1000, HiddenSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 4,
                FfnDim = 256, MaxPositionEmbeddings = 64, WordEmbedProjDim = 64, TorchDtype = "float16",
            },
            tiny);

        var postLn = OptConfigs.Resolve(Fixtures.HfOpt("opt-tiny-postln"));
        Assert.False(postLn.DoLayerNormBefore);
        Assert.Equal(32, postLn.WordEmbedProjDim);
        Assert.Equal(128, postLn.FfnDim);
        Assert.True(postLn.HasProjection);
        Assert.False(postLn.HasFinalLayerNorm);
    }

    [Fact]
    public void AppliesHuggingFaceDefaults()
    {
        var config = OptConfigs.FromJson(Write(Minimal()));
        Assert.Equal(32, config.WordEmbedProjDim);
        Assert.True(config.DoLayerNormBefore);
        Assert.True(config.EnableBias);
        Assert.True(config.LayerNormElementwiseAffine);
        Assert.False(config.RemoveFinalLayerNorm);
        Assert.Equal((1, 2, 2), (config.PadTokenId, config.BosTokenId, config.EosTokenId));
    }

    [Fact]
    public void ReadsOptionalKeysAndTheOlderDtypeSpelling()
    {
        var config = OptConfigs.FromJson(Write(Minimal() + """
            , "enable_bias": false, "layer_norm_elementwise_affine": false, "_remove_final_layer_norm": true,
            "do_layer_norm_before": false, "torch_dtype": "bfloat16", "pad_token_id": 0, "eos_token_id": 7
            """));
        Assert.False(config.EnableBias);
        Assert.False(config.LayerNormElementwiseAffine);
        Assert.True(config.RemoveFinalLayerNorm);
        Assert.False(config.DoLayerNormBefore);
        Assert.Equal("bfloat16", config.TorchDtype);
        Assert.Equal((0, 7), (config.PadTokenId, config.EosTokenId));
    }

    [Theory]
    [InlineData("not json at all", "not valid JSON")]
    [InlineData("[1, 2]", "not a JSON object")]
    [InlineData("""{"model_type": "llama"}""", "is not an OPT config: model_type is 'llama'")]
    [InlineData("""{"vocab_size": 10}""", "model_type is '(absent)'")]
    public void RejectsWhatIsNotAnOptConfig(string text, string expected)
    {
        var path = WriteRaw(text);
        var error = Assert.Throws<InvalidDataException>(() => OptConfigs.FromJson(path));
        Assert.Contains(path, error.Message);
        Assert.Contains(expected, error.Message);
    }

    [Theory]
    [InlineData("\"hidden_size\": 32,", "", "lacks the required key 'hidden_size'")]
    [InlineData("\"ffn_dim\": 64,", "\"ffn_dim\": \"64\",", "'ffn_dim' = \"64\"; expected an integer")]
    [InlineData("\"ffn_dim\": 64,", "\"ffn_dim\": 64.5,", "'ffn_dim' = 64.5; expected an integer")]
    [InlineData("\"num_hidden_layers\": 2,", "\"num_hidden_layers\": 0,", "'num_hidden_layers' = 0; it must be positive")]
    [InlineData("\"num_attention_heads\": 4,", "\"num_attention_heads\": 5,", "hidden_size 32, which num_attention_heads 5 does not divide")]
    [InlineData("\"model_type\": \"opt\"", "\"model_type\": \"opt\", \"enable_bias\": 1", "'enable_bias' of type Number; expected true or false")]
    [InlineData("\"model_type\": \"opt\"", "\"model_type\": \"opt\", \"activation_function\": \"gelu\"", "activation_function 'gelu'")]
    [InlineData("\"model_type\": \"opt\"", "\"model_type\": \"opt\", \"dtype\": \"int8\"", "dtype 'int8'")]
    [InlineData("\"model_type\": \"opt\"", "\"model_type\": \"opt\", \"bos_token_id\": -1", "'bos_token_id' = -1")]
    public void NamesTheFileAndKeyOfEachProblem(string find, string replace, string expected)
    {
        var text = "{" + Minimal() + "}";
        Assert.Contains(find, text);
        var path = WriteRaw(text.Replace(find, replace));
        var error = Assert.Throws<InvalidDataException>(() => OptConfigs.FromJson(path));
        Assert.Contains(path, error.Message);
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void KnowsThePublishedSizes()
    {
        Assert.Equal(
            ["opt-125m", "opt-350m", "opt-1.3b", "opt-2.7b", "opt-6.7b", "opt-13b", "opt-30b", "opt-66b", "opt-175b"],
            OptConfigs.NamedSizes);
        var expected = new Dictionary<string, (int Layers, int Hidden, int Heads, int Ffn)>
        {
            ["opt-125m"] = (12, 768, 12, 3072), ["opt-350m"] = (24, 1024, 16, 4096),
            ["opt-1.3b"] = (24, 2048, 32, 8192), ["opt-2.7b"] = (32, 2560, 32, 10240),
            ["opt-6.7b"] = (32, 4096, 32, 16384), ["opt-13b"] = (40, 5120, 40, 20480),
            ["opt-30b"] = (48, 7168, 56, 28672), ["opt-66b"] = (64, 9216, 72, 36864),
            ["opt-175b"] = (96, 12288, 96, 49152),
        };
        foreach (var (name, shape) in expected)
        {
            var c = OptConfigs.Named(name);
            Assert.Equal(shape, (c.NumHiddenLayers, c.HiddenSize, c.NumAttentionHeads, c.FfnDim));
            Assert.Equal((50272, 2048, 1, 2, 2), (c.VocabSize, c.MaxPositionEmbeddings, c.PadTokenId, c.BosTokenId, c.EosTokenId));
            Assert.Equal(name == "opt-350m" ? 512 : c.HiddenSize, c.WordEmbedProjDim);
            Assert.Equal(name != "opt-350m", c.DoLayerNormBefore);
            Assert.True(c.EnableBias);
        }
    }

    [Fact]
    public void ResolvesNamesAndDirectories()
    {
        Assert.Equal("opt-6.7b", OptConfigs.Resolve("opt-6.7b").Name);
        Assert.Equal("opt-13b", OptConfigs.Named("facebook/OPT-13B").Name);
        Assert.Equal(1000, OptConfigs.Resolve(Fixtures.HfOpt("opt-tiny")).VocabSize);

        var unknown = Assert.Throws<ArgumentException>(() => OptConfigs.Named("opt-7b"));
        Assert.Contains("opt-7b", unknown.Message);
        Assert.Contains("opt-125m, opt-350m", unknown.Message);
        var neither = Assert.Throws<ArgumentException>(() => OptConfigs.Resolve(Path.Combine(_dir, "missing")));
        Assert.Contains("opt-175b", neither.Message);
        Assert.Throws<FileNotFoundException>(() => OptConfigs.Resolve(_dir));
    }

    private static string Minimal() => """
        "model_type": "opt", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "ffn_dim": 64, "max_position_embeddings": 16
        """;

    private string Write(string body) => WriteRaw("{" + body + "}");

    private string WriteRaw(string text)
    {
        var path = Path.Combine(_dir, $"config-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, text);
        return path;
    }
}
