using System.Text.Json;

namespace ActorInfer.Cli.Tests;

/// <summary>`actorinfer bench-attention`: every kernel timed, errors measured, the fastest exact one named.</summary>
public class BenchAttentionCommandTests
{
    [Fact]
    public void Json_lists_each_kernel_with_its_error_and_names_the_fastest_exact_one()
    {
        var (code, output, error) = CliHarness.Run("bench-attention", "--model", "opt-125m", "--batch", "2", "--prompt-len", "8", "--gen-len", "4",
            "--threads", "1", "--kinds", "Sdpa", "Float32", "Float32Matmul", "--chunks", "0", "7", "--split", "both", "--masked", "--repeat", "1", "--json");
        Assert.True(code == 0, error);
        var json = JsonDocument.Parse(output).RootElement;
        var results = json.GetProperty("results").EnumerateArray().ToList();
        // Three kinds, two chunk sizes, one thread count, split by libtorch and by a pool: 12 timings of 12 heads x 64 over 10 tokens.
        Assert.Equal(12, results.Count);
        Assert.All(results, r => Assert.Equal(12, r.GetProperty("heads").GetInt32()));
        Assert.All(results, r => Assert.Equal(10, r.GetProperty("context").GetInt32()));
        // The float32 kernels are exact; which is fastest is the machine's business.
        Assert.All(results.Where(r => r.GetProperty("kernel").GetString()!.StartsWith("Float32", StringComparison.Ordinal)),
            r => Assert.True(r.GetProperty("exact").GetBoolean(), r.GetRawText()));
        var fastest = Assert.Single(json.GetProperty("fastest_exact").EnumerateArray());
        Assert.Equal(2, fastest.GetProperty("batch").GetInt32());
        Assert.Contains(fastest.GetProperty("kernel").GetString(), results.Select(r => r.GetProperty("kernel").GetString()));
    }

    [Fact]
    public void A_bad_kernel_for_generate_is_named()
    {
        var (code, _, error) = CliHarness.Run("generate", "--model", "opt-125m", "--dummy", "--input", "missing.jsonl", "--output", "out.jsonl",
            "--cpu-attention-kernel", "flash");
        Assert.NotEqual(0, code);
        Assert.Contains("--cpu-attention-kernel", error);
        Assert.Contains("'flash' is not a CPU attention kernel", error);
    }
}
