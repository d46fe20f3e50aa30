namespace ActorInfer.Cli.Tests;

/// <summary>Bad input gets one clear line and a non-zero exit code, never a stack trace.</summary>
public class GenerateBadInputTests
{
    private static string CopyFixture(string work, string model = "opt-tiny")
    {
        var source = Fixtures.HfOpt(model);
        var target = Path.Combine(work, model);
        Directory.CreateDirectory(target);
        foreach (var f in Directory.GetFiles(source)) File.Copy(f, Path.Combine(target, Path.GetFileName(f)));
        return target;
    }

    private static (int Code, string Error) Generate(string model, string inputText, params string[] extra)
    {
        var work = CliHarness.TempDir();
        var input = Path.Combine(work, "in.jsonl");
        File.WriteAllText(input, inputText);
        var (code, _, error) = CliHarness.Run(["generate", "--model", model, "--input", input, "--output", Path.Combine(work, "out.jsonl"), .. extra]);
        Assert.DoesNotContain("   at ", error);
        return (code, error);
    }

    private const string GoodLine = """{"prompt":[2,5,6],"max_tokens":2,"temperature":0}""";

    [Fact]
    public void Missing_safetensors_file_is_named()
    {
        var dir = CopyFixture(CliHarness.TempDir());
        File.Delete(Path.Combine(dir, "model.safetensors"));
        var (code, error) = Generate(dir, GoodLine);
        Assert.NotEqual(0, code);
        Assert.Contains("safetensors", error);
    }

    [Fact]
    public void Corrupt_safetensors_file_is_named()
    {
        var dir = CopyFixture(CliHarness.TempDir());
        var path = Path.Combine(dir, "model.safetensors");
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var (code, error) = Generate(dir, GoodLine);
        Assert.NotEqual(0, code);
        Assert.Contains("model.safetensors", error);
    }

    [Fact]
    public void A_config_of_an_unsupported_model_type_is_refused()
    {
        var dir = CopyFixture(CliHarness.TempDir());
        var config = Path.Combine(dir, "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"model_type\": \"opt\"", "\"model_type\": \"gpt2\""));
        var (code, error) = Generate(dir, GoodLine);
        Assert.NotEqual(0, code);
        Assert.Contains("model_type 'gpt2'", error);
        Assert.Contains("opt, llama, mistral, qwen2", error);
    }

    [Fact]
    public void An_opt_config_relabelled_llama_is_refused_naming_the_missing_key()
    {
        var dir = CopyFixture(CliHarness.TempDir());
        var config = Path.Combine(dir, "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"model_type\": \"opt\"", "\"model_type\": \"llama\""));
        var (code, error) = Generate(dir, GoodLine);
        Assert.NotEqual(0, code);
        Assert.Contains("intermediate_size", error);
    }

    [Fact]
    public void A_tensor_with_a_wrong_shape_is_named()
    {
        var dir = CopyFixture(CliHarness.TempDir());
        var config = Path.Combine(dir, "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"ffn_dim\": 256", "\"ffn_dim\": 128"));
        var (code, error) = Generate(dir, GoodLine);
        Assert.NotEqual(0, code);
        Assert.Contains("fc1.weight", error);
        Assert.Contains("shape", error);
    }

    [Fact]
    public void A_prompt_longer_than_the_context_is_refused_with_its_line()
    {
        var ids = string.Join(",", Enumerable.Range(3, 70));
        var (code, error) = Generate(Fixtures.HfOpt("opt-tiny"), $"{{\"prompt\":[{ids}],\"max_tokens\":1}}\n");
        Assert.NotEqual(0, code);
        Assert.Contains("line 1", error);
        Assert.Contains("context of 64", error);
    }

    [Fact]
    public void Malformed_jsonl_names_the_line_and_runs_nothing_without_keep_going()
    {
        var work = CliHarness.TempDir();
        var input = Path.Combine(work, "in.jsonl");
        var output = Path.Combine(work, "out.jsonl");
        File.WriteAllLines(input, [GoodLine, "{\"prompt\": [2, 5", GoodLine]);
        var (code, _, error) = CliHarness.Run("generate", "--model", Fixtures.HfOpt("opt-tiny"), "--input", input, "--output", output);
        Assert.NotEqual(0, code);
        Assert.Contains("line 2", error);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void Keep_going_processes_the_other_lines_and_writes_an_error_line()
    {
        var work = CliHarness.TempDir();
        var input = Path.Combine(work, "in.jsonl");
        var output = Path.Combine(work, "out.jsonl");
        File.WriteAllLines(input, [GoodLine, "not json", """{"prompt":[2,5],"temperature":7}""", GoodLine]);
        var (code, _, error) = CliHarness.Run("generate", "--model", Fixtures.HfOpt("opt-tiny"), "--input", input, "--output", output, "--keep-going");
        Assert.NotEqual(0, code);
        Assert.Contains("2 bad lines", error);
        var lines = CliHarness.ReadJsonl(output);
        Assert.Equal(4, lines.Count);
        Assert.Equal(2, lines[0].GetProperty("output_ids").GetArrayLength());
        Assert.Equal(2, lines[1].GetProperty("line").GetInt32());
        Assert.Equal("temperature", lines[2].GetProperty("error").GetProperty("param").GetString());
        Assert.Equal(lines[0].GetProperty("output_ids").GetRawText(), lines[3].GetProperty("output_ids").GetRawText());
    }

    [Fact]
    public void Unknown_model_name_lists_the_known_sizes()
    {
        var (code, error) = Generate("opt-7b", GoodLine, "--dummy");
        Assert.NotEqual(0, code);
        Assert.Contains("opt-6.7b", error);
    }

    [Fact]
    public void Missing_input_file_is_named()
    {
        var (code, _, error) = CliHarness.Run("generate", "--model", Fixtures.HfOpt("opt-tiny"), "--input", "/nonexistent/in.jsonl", "--output", "/tmp/x.jsonl");
        Assert.NotEqual(0, code);
        Assert.Contains("/nonexistent/in.jsonl", error);
    }
}

public class InfoCommandTests
{
    [Fact]
    public void Opt175b_reports_about_175_billion_parameters_and_its_layer_bytes()
    {
        var (code, output, _) = CliHarness.Run("info", "--model", "opt-175b");
        Assert.Equal(0, code);
        Assert.Contains("174.60 billion", output);
        Assert.Contains("3,624,198,144 bytes", output);
    }

    [Theory]
    [InlineData("llama-2-7b", "6.74 billion", "key/value heads 32")]
    [InlineData("llama-2-13b", "13.02 billion", "key/value heads 40")]
    [InlineData("llama-2-70b", "68.98 billion", "key/value heads 8")]
    [InlineData("llama-3.1-8b", "8.03 billion", "key/value heads 8")]
    [InlineData("llama-3.1-70b", "70.55 billion", "key/value heads 8")]
    [InlineData("mistral-7b", "7.24 billion", "key/value heads 8")]
    public void Llama_family_sizes_report_their_published_parameter_counts(string model, string parameters, string heads)
    {
        var (code, output, error) = CliHarness.Run("info", "--model", model);
        Assert.True(code == 0, error);
        Assert.Contains(parameters, output);
        Assert.Contains(heads, output);
    }

    [Fact]
    public void Llama_3_1_8b_holds_128_kib_of_cache_per_token()
    {
        // 32 layers x 2 x 8 key/value heads x 128 x 2 bytes: 1 GiB over 8,192 tokens.
        var (code, output, _) = CliHarness.Run("info", "--model", "llama-3.1-8b");
        Assert.Equal(0, code);
        Assert.Contains("KV cache per token 131,072 bytes", output);
    }
}
