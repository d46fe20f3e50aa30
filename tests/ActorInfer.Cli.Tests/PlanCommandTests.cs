namespace ActorInfer.Cli.Tests;

/// <summary>`actorinfer plan`: the JSON contract and clear errors for bad input.</summary>
public class PlanCommandTests
{
    private static readonly string[] T4 =
        ["--prompt-len", "512", "--gen-len", "32", "--gpu-mem", "16GB", "--cpu-mem", "208GB", "--disk-mem", "1.5TB", "--hardware", "t4-flexgen"];

    [Fact]
    public void Json_has_the_documented_keys_and_fractions_sum_to_one()
    {
        var (code, output, error) = CliHarness.Run(["plan", "--model", "opt-30b", .. T4, "--json"]);
        Assert.True(code == 0, error);
        var json = System.Text.Json.JsonDocument.Parse(output).RootElement;
        foreach (var key in new[] { "gpu_batch_size", "num_gpu_batches", "throughput_tokens_per_s", "peak_memory_bytes", "search_ms" })
            Assert.True(json.TryGetProperty(key, out _), key);
        foreach (var kind in new[] { "weights", "realized_weights", "cache", "activations" })
        {
            var f = json.GetProperty(kind);
            var sum = f.GetProperty("gpu").GetDouble() + f.GetProperty("cpu").GetDouble() + f.GetProperty("disk").GetDouble();
            Assert.InRange(sum, 1 - 1e-6, 1 + 1e-6);
        }
    }

    [Fact]
    public void The_gpu_peak_is_broken_into_its_terms_in_text_and_json()
    {
        string[] flexGen = ["plan", "--model", "opt-30b", .. T4, "--percent", "20", "80", "0", "100", "0", "100", "--gpu-batch-size", "48", "--num-gpu-batches", "3"];
        var (code, output, error) = CliHarness.Run([.. flexGen, "--json"]);
        Assert.True(code == 0, error);
        var json = System.Text.Json.JsonDocument.Parse(output).RootElement;
        Assert.Equal("prefill", json.GetProperty("gpu_peak_phase").GetString());
        var terms = json.GetProperty("gpu_peak_terms_bytes").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());
        // Each term is rounded up to a byte: the sum is the peak within one byte per term.
        Assert.InRange(terms.Values.Sum() - json.GetProperty("peak_memory_bytes").GetProperty("gpu").GetDouble(), -1, terms.Count);
        Assert.Equal(0, terms["cache"]);
        Assert.True(terms["weights"] > 4.9e9 && terms["compute"] > 2e9);

        (code, output, error) = CliHarness.Run(flexGen);
        Assert.True(code == 0, error);
        Assert.Contains("GPU peak      prefill: weights 4.97 GB, weight buffers 2.26 GB, hidden in flight 1.06 GB, cache in flight 1.41 GB, compute 2.11 GB", output);
        // FlexGen's published T4 policy, as the device would report it before the context: still within its 16 GB.
        Assert.Contains("device peak   13.86 GB as the device would report", output);
    }

    [Fact]
    public void Spread_weights_place_the_given_percentage_over_the_model_as_a_whole()
    {
        string[] given = ["plan", "--model", "opt-30b", .. T4, "--percent", "20", "80", "0", "100", "0", "100", "--gpu-batch-size", "48", "--num-gpu-batches", "1",
            "--cpu-attention", "on", "--json"];
        var (code, output, error) = CliHarness.Run([.. given, "--weight-placement", "spread"]);
        Assert.True(code == 0, error);
        var spread = System.Text.Json.JsonDocument.Parse(output).RootElement;
        (code, output, error) = CliHarness.Run(given);
        Assert.True(code == 0, error);
        var rule = System.Text.Json.JsonDocument.Parse(output).RootElement;
        Assert.Equal("spread", spread.GetProperty("weight_placement").GetString());
        Assert.Equal("flexgen", rule.GetProperty("weight_placement").GetString());
        Assert.InRange(spread.GetProperty("realized_weights").GetProperty("gpu").GetDouble(), 0.195, 0.205);
        Assert.InRange(rule.GetProperty("realized_weights").GetProperty("gpu").GetDouble(), 0.081, 0.083);
        // Fewer weights cross the link: decoding is predicted faster, and the GPU holds more.
        Assert.True(spread.GetProperty("decode_seconds").GetDouble() < rule.GetProperty("decode_seconds").GetDouble());
        Assert.True(spread.GetProperty("peak_memory_bytes").GetProperty("gpu").GetDouble() > rule.GetProperty("peak_memory_bytes").GetProperty("gpu").GetDouble());
    }

    [Fact]
    public void FlexGens_t4_policy_for_opt_30b_fits_16_GB_as_placed_and_predicts_within_25_percent_of_its_7_32_token_s()
    {
        string[] flexGen =
        [
            "plan", "--model", "opt-30b", "--prompt-len", "512", "--gen-len", "32", "--gpu-mem", "16GB", "--cpu-mem", "200GB",
            "--percent", "20", "80", "0", "100", "0", "100", "--gpu-batch-size", "48", "--num-gpu-batches", "3", "--cpu-attention", "on",
        ];
        var (code, output, error) = CliHarness.Run([.. flexGen, "--json"]);
        Assert.True(code == 0, error);
        var json = System.Text.Json.JsonDocument.Parse(output).RootElement;
        Assert.True(json.GetProperty("fits").GetBoolean(), output);
        Assert.InRange(json.GetProperty("peak_memory_bytes").GetProperty("gpu").GetDouble(), 11e9, 16e9);
        Assert.InRange(json.GetProperty("throughput_tokens_per_s").GetDouble(), 7.32 * 0.75, 7.32 * 1.25);
        // The given fractions and what they place: the attention's output projection and the vectors after it.
        Assert.Equal(0.2, json.GetProperty("weights").GetProperty("gpu").GetDouble(), 9);
        Assert.InRange(json.GetProperty("realized_weights").GetProperty("gpu").GetDouble(), 0.081, 0.083);

        (code, output, error) = CliHarness.Run(flexGen);
        Assert.True(code == 0, error);
        Assert.Contains("  weights     gpu 20.0%  cpu 80.0%  disk 0.0%  (realized: gpu 8.2%  cpu 91.8%  disk 0.0%)", output);
        Assert.DoesNotContain("does not fit", output);
    }

    [Fact]
    public void A_model_that_fits_nowhere_gets_no_feasible_policy_with_the_minimum_per_tier()
    {
        var (code, _, error) = CliHarness.Run("plan", "--model", "opt-175b", "--prompt-len", "512", "--gen-len", "32",
            "--gpu-mem", "1GB", "--cpu-mem", "10GB", "--disk-mem", "10GB", "--hardware", "t4-flexgen");
        Assert.NotEqual(0, code);
        Assert.Contains("no feasible policy", error);
        Assert.Contains("GPU", error);
        Assert.DoesNotContain("   at ", error);
    }

    [Theory]
    [InlineData("--gpu-mem", "-16GB")]
    [InlineData("--gpu-mem", "0")]
    [InlineData("--cpu-mem", "lots")]
    public void Bad_sizes_are_named(string option, string value)
    {
        var args = T4.ToList();
        args[args.IndexOf(option) + 1] = value;
        var (code, _, error) = CliHarness.Run(["plan", "--model", "opt-30b", .. args]);
        Assert.NotEqual(0, code);
        Assert.Contains(option, error);
    }

    [Fact]
    public void Unknown_models_and_malformed_profiles_are_refused()
    {
        var (code, _, error) = CliHarness.Run(["plan", "--model", "opt-31b", .. T4]);
        Assert.NotEqual(0, code);
        Assert.Contains("opt-31b", error);

        var profile = Path.Combine(CliHarness.TempDir(), "bad.json");
        File.WriteAllText(profile, """{"name": "x", "memory": {"gpu_bytes": -1}}""");
        var args = T4.ToList();
        args[args.IndexOf("--hardware") + 1] = profile;
        (code, _, error) = CliHarness.Run(["plan", "--model", "opt-30b", .. args]);
        Assert.NotEqual(0, code);
        Assert.Contains("gpu_bytes", error);
    }
}
