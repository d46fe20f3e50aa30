using System.Text.RegularExpressions;
using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;
using ActorInfer.Runtime.Schedule;
using static TorchSharp.torch;

namespace ActorInfer.Cli.Tests;

/// <summary>`generate --pressure FILE`: a budget schedule replayed against a running job through the actors.</summary>
public class PressureReplayTests
{
    private static readonly string Model = Fixtures.HfOpt("opt-tiny");
    // A block decodes MaxTokens - 1 steps. The replay delivers a step-timed change before the next step begins, so a shrink
    // sent at step 3 reaches the first block while it runs however loaded the machine (before that, CI saw one arrive only
    // after the job, and nothing dropped).
    private const int Requests = 24, MaxTokens = 48;

    private static string Input(string work)
    {
        var path = Path.Combine(work, "in.jsonl");
        File.WriteAllLines(path, Enumerable.Range(0, Requests).Select(i =>
            $"{{\"prompt\":[2,{string.Join(",", Enumerable.Range(0, 4 + i % 4).Select(j => 10 + (i * 7 + j) % 900))}],\"max_tokens\":{MaxTokens},\"temperature\":0,\"ignore_eos\":true}}"));
        return path;
    }

    /// <summary>
    /// What the device tier holds for one sequence with every weight off the device (float32 on the CPU), planned
    /// as the runtime's planner plans a block: for a resumed sequence whose context fills its whole capacity but one
    /// token, beside a fresh one with every token still to generate.
    /// A budget just above it leaves room for one sequence whatever the weights' placement.
    /// </summary>
    private static long OneSequenceBytes()
    {
        var config = OptConfigs.Resolve(Model);
        using var source = SafetensorsCheckpoint.Open(Model);
        var policy = new Policy(1, 1, TierFractions.AllCpu, TierFractions.AllGpu, TierFractions.AllGpu);
        const int prompt = 8; // the longest prompt above: </s> + 7 tokens
        return OffloadRuntime.PlanFor(config, source, policy, ScalarType.Float32, deviceIsCpu: true, prompt + MaxTokens - 1, MaxTokens).Total.Device;
    }

    private static List<string> OutputIds(string path) =>
        CliHarness.ReadJsonl(path).Select(r => r.GetProperty("output_ids").GetRawText()).ToList();

    [Fact]
    public void A_budget_that_shrinks_and_grows_again_drops_batches_and_changes_no_output()
    {
        var work = CliHarness.TempDir();
        var input = Input(work);
        string[] common = ["generate", "--model", Model, "--input", input, "--gpu-batch-size", "2", "--num-gpu-batches", "3", "--engine", "actors"];
        var (code, _, error) = CliHarness.Run([.. common, "--output", Path.Combine(work, "ref.jsonl")]);
        Assert.True(code == 0, error);

        var pressure = Path.Combine(work, "pressure.jsonl");
        File.WriteAllLines(pressure,
        [
            $"{{\"at_step\": 3, \"tier\": \"gpu\", \"budget\": {OneSequenceBytes() + 1024}}}",
            $"{{\"at_step\": 60, \"tier\": \"gpu\", \"budget\": \"1GiB\"}}",
        ]);
        (code, _, error) = CliHarness.Run([.. common, "--output", Path.Combine(work, "out.jsonl"), "--pressure", pressure]);
        Assert.True(code == 0, error);
        Assert.Equal(OutputIds(Path.Combine(work, "ref.jsonl")), OutputIds(Path.Combine(work, "out.jsonl")));
        var summary = Regex.Match(error, @"pressure: (\d+) events sent, (\d+) honoured .*; (\d+) GPU batches dropped, (\d+) sequences requeued");
        Assert.True(summary.Success, error);
        Assert.True(summary.Groups[1].Value == "2", error);
        Assert.True(summary.Groups[2].Value == "2", error);
        Assert.True(int.Parse(summary.Groups[3].Value) > 0, error);
        Assert.True(int.Parse(summary.Groups[4].Value) > 0, error);
    }

    [Fact]
    public void A_recorded_run_draws_as_a_png_with_its_drops()
    {
        var work = CliHarness.TempDir();
        var pressure = Path.Combine(work, "pressure.jsonl");
        File.WriteAllLines(pressure,
        [
            $"{{\"at_step\": 3, \"tier\": \"gpu\", \"budget\": {OneSequenceBytes() + 1024}}}",
            "{\"at_step\": 60, \"tier\": \"gpu\", \"budget\": \"1GiB\"}",
        ]);
        var run = Path.Combine(work, "run");
        var (code, _, error) = CliHarness.Run("generate", "--model", Model, "--input", Input(work), "--output", Path.Combine(work, "out.jsonl"),
            "--gpu-batch-size", "2", "--num-gpu-batches", "3", "--pressure", pressure, "--run-dir", run);
        Assert.True(code == 0, error);
        var timeline = File.ReadAllLines(Path.Combine(run, "timeline.jsonl"));
        Assert.Contains(timeline, l => l.Contains("\"kind\":\"drop\""));
        Assert.Equal(2, timeline.Count(l => l.Contains("\"kind\":\"pressure\"")));
        // The runtime's policy as it changes: the first, the one for a single sequence's budget, and more.
        var policies = timeline.Where(l => l.Contains("\"kind\":\"policy\"")).ToList();
        Assert.True(policies.Count >= 2, string.Join("\n", timeline.Take(5)));
        Assert.All(policies, l => Assert.Matches("\"detail\":\"batch \\d+ x \\d+; weights ", l));
        // Each step's block size is what ran: the whole block of 6 at first, fewer once batches were dropped.
        var sizes = timeline.Where(l => l.Contains("\"kind\":\"step\""))
            .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("block_size").GetInt32()).ToList();
        Assert.Equal(6, sizes[0]);
        Assert.All(sizes, n => Assert.InRange(n, 1, 6));
        // 24 requests do not fill the last block of 6 after a block's worth ran one at a time: it runs what is left.
        Assert.InRange(sizes[^1], 1, 5);

        string output;
        (code, output, error) = CliHarness.Run("report", "--run", run);
        Assert.True(code == 0, error);
        Assert.Matches(@"wrote .*report\.png \(\d+x\d+\): \d+ steps, [1-9]\d* drops, 2 pressure events; 7 series", output);
        var png = File.ReadAllBytes(Path.Combine(run, "report.png"));
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);

        (code, _, error) = CliHarness.Run("report", "--run", work);
        Assert.NotEqual(0, code);
        Assert.Contains("timeline.jsonl", error);
    }

    [Fact]
    public void Bench_replays_a_schedule_during_a_measured_run()
    {
        var work = CliHarness.TempDir();
        var pressure = Path.Combine(work, "pressure.jsonl");
        File.WriteAllLines(pressure,
        [
            $"{{\"at_step\": 3, \"tier\": \"gpu\", \"budget\": {OneSequenceBytes() + 1024}}}",
            "{\"at_ms\": 60000, \"tier\": \"gpu\", \"budget\": \"1GiB\"}",
        ]);
        var (code, output, error) = CliHarness.Run("bench", "--model", Model, "--prompt-len", "8", "--gen-len", $"{MaxTokens}",
            "--gpu-batch-size", "2", "--num-gpu-batches", "3", "--pressure", pressure, "--json");
        Assert.True(code == 0, error);
        Assert.Matches(@"pressure: \d+ events sent, \d+ honoured .*; [1-9]\d* GPU batches dropped", error);
        Assert.True(output.TrimStart().StartsWith('{'), output);
        var json = System.Text.Json.JsonDocument.Parse(output).RootElement;
        Assert.True(json.GetProperty("total_throughput").GetDouble() > 0);
        // The planner's GPU peak for the given policy, beside what the device reports (nothing on the CPU).
        Assert.True(json.GetProperty("predicted_gpu_peak_bytes").GetInt64() > 0, output);
        // The device's figure it predicts needs the CUDA context: none on the CPU.
        Assert.Equal(System.Text.Json.JsonValueKind.Null, json.GetProperty("predicted_device_peak_bytes").ValueKind);
        // No allocator cap off CUDA: host memory is not the caching allocator's.
        Assert.Equal(System.Text.Json.JsonValueKind.Null, json.GetProperty("allocator_cap_bytes").ValueKind);
        // The weight fractions of the policy in force (the pressure moved weights off the device) as the runtime placed them.
        var realized = json.GetProperty("realized_weights");
        Assert.Equal(1, realized.GetProperty("gpu").GetDouble() + realized.GetProperty("cpu").GetDouble() + realized.GetProperty("disk").GetDouble(), 9);
    }

    [Theory]
    [InlineData("{\"at_step\": 1, \"tier\": \"gpu\"}", "'budget' is required")]
    [InlineData("{\"at_step\": 1, \"at_ms\": 5, \"tier\": \"gpu\", \"budget\": \"1GiB\"}", "exactly one of 'at_ms' and 'at_step'")]
    [InlineData("{\"at_step\": -1, \"tier\": \"gpu\", \"budget\": \"1GiB\"}", "'at_step'")]
    [InlineData("{\"at_step\": 1, \"tier\": \"tpu\", \"budget\": \"1GiB\"}", "'tier'")]
    [InlineData("{\"at_step\": 1, \"tier\": \"gpu\", \"budget\": \"lots\"}", "'budget'")]
    [InlineData("{\"at_step\": 1, \"tier\": \"gpu\", \"budget\": \"1GiB\", \"why\": 1}", "unknown field 'why'")]
    [InlineData("{\"at_step\": 1, \"tier\": \"gpu\", \"budget\": 1}", "below what one sequence needs")]
    [InlineData("not json", "not valid JSON")]
    public void A_bad_schedule_is_refused_naming_the_line_and_field(string line, string expected)
    {
        var work = CliHarness.TempDir();
        var pressure = Path.Combine(work, "pressure.jsonl");
        File.WriteAllLines(pressure, ["{\"at_ms\": 0, \"tier\": \"cpu\", \"budget\": \"8GiB\"}", line]);
        var (code, _, error) = CliHarness.Run("generate", "--model", Model, "--input", Input(work), "--output", Path.Combine(work, "out.jsonl"),
            "--pressure", pressure);
        Assert.NotEqual(0, code);
        Assert.Contains(expected, error);
        if (!expected.Contains("one sequence")) Assert.Contains("line 2", error);
        Assert.False(File.Exists(Path.Combine(work, "out.jsonl")));
    }
}
