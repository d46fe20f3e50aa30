using System.Globalization;
using System.Text.RegularExpressions;
using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;
using ActorInfer.Runtime.Schedule;
using static TorchSharp.torch;

namespace ActorInfer.Cli.Tests;

/// <summary>
/// The chaos test of elastic memory: a job of 300 greedy requests under 100 seeded random device budgets between
/// 25% and 100% of what the job's largest block needs, replayed by `generate --pressure` through the actors.
/// </summary>
public class ChaosReplayTests
{
    private static readonly string Model = Fixtures.HfOpt("opt-tiny");
    private const int Requests = 300, Events = 100, Seed = 20261127;
    private const double LowestBudget = 0.25, HighestBudget = 1.0;
    private const int GpuBatchSize = 4, GpuBatches = 4, LongestPrompt = 8, MostTokens = 16;

    /// <summary>Prompts of 2 to 8 tokens (with the leading &lt;/s&gt;) and 4 to 16 tokens each, all greedy.</summary>
    private static string Input(string work, Random random)
    {
        var path = Path.Combine(work, "in.jsonl");
        File.WriteAllLines(path, Enumerable.Range(0, Requests).Select(i =>
        {
            var ids = Enumerable.Range(0, random.Next(1, LongestPrompt)).Select(_ => random.Next(10, 900));
            return $"{{\"id\":\"r{i}\",\"prompt\":[2,{string.Join(",", ids)}],\"max_tokens\":{random.Next(4, MostTokens + 1)},\"temperature\":0,\"ignore_eos\":true}}";
        }));
        return path;
    }

    /// <summary>
    /// The device budget the job needs: its largest block (4 x 4) with every tensor on the device, each sequence's
    /// context at the full capacity, as the runtime places it (float32 on the CPU device tier).
    /// </summary>
    private static long NeededBytes()
    {
        var config = OptConfigs.Resolve(Model);
        using var source = SafetensorsCheckpoint.Open(Model);
        var all = TierFractions.AllGpu;
        return OffloadRuntime.PlanFor(config, source, new Policy(GpuBatchSize, GpuBatches, all, all, all), ScalarType.Float32, deviceIsCpu: true,
            LongestPrompt + MostTokens, 0).Total.Device;
    }

    private static List<(string Id, string Text, string Ids)> Outputs(string path) =>
        CliHarness.ReadJsonl(path).Select(r => (r.GetProperty("id").GetString()!, r.GetProperty("text").GetString()!, r.GetProperty("output_ids").GetRawText())).ToList();

    [Fact]
    public void Three_hundred_requests_under_a_hundred_random_budgets_complete_once_each_with_the_output_of_a_run_without_pressure()
    {
        var random = new Random(Seed);
        var work = CliHarness.TempDir();
        var input = Input(work, random);
        string[] common = ["generate", "--model", Model, "--input", input, "--gpu-batch-size", $"{GpuBatchSize}", "--num-gpu-batches", $"{GpuBatches}"];
        var (code, _, error) = CliHarness.Run([.. common, "--output", Path.Combine(work, "ref.jsonl")]);
        Assert.True(code == 0, error);
        var expected = Outputs(Path.Combine(work, "ref.jsonl"));

        // 100 events a few decoding steps apart; the last gives the whole budget back (within the range) so the job can finish.
        var needed = NeededBytes();
        var budgets = Enumerable.Range(0, Events - 1)
            .Select(_ => (long)(needed * (LowestBudget + random.NextDouble() * (HighestBudget - LowestBudget))))
            .Append(needed).ToArray();
        var step = 0;
        var pressure = Path.Combine(work, "pressure.jsonl");
        File.WriteAllLines(pressure, budgets.Select(b => $"{{\"at_step\": {step += random.Next(1, 4)}, \"tier\": \"gpu\", \"budget\": {b}}}"));
        var outPath = Path.Combine(work, "out.jsonl");
        (code, _, error) = CliHarness.Run([.. common, "--output", outPath, "--pressure", pressure]);
        Assert.True(code == 0, error);

        // Every request answered exactly once, in order, with the text and tokens of the run without pressure.
        var actual = Outputs(outPath);
        Assert.Equal(Requests, actual.Count);
        Assert.Equal(expected.Select(e => e.Id), actual.Select(a => a.Id));
        Assert.Equal(Requests, actual.Select(a => a.Id).Distinct().Count());
        Assert.Equal(expected, actual);

        // Every event honoured; once honoured, the device tier enforced its budget: no budget was applied above what
        // the device held, and no allocation ran past one (that would have been an out-of-memory event).
        var summary = Regex.Match(error,
            @"pressure: (\d+) events sent, (\d+) honoured .*; (\d+) GPU batches dropped, (\d+) sequences requeued; (\d+) device out-of-memory events; (\d+) budgets applied while the device held more; weights moved ([\d.]+ \w+)");
        Assert.True(summary.Success, error);
        int Group(int g) => int.Parse(summary.Groups[g].Value, CultureInfo.InvariantCulture);
        Assert.Equal(Events, Group(1));
        Assert.Equal(Events, Group(2));
        Assert.True(Group(3) > 0 && Group(4) > 0, $"nothing was dropped: {summary.Value}");
        Assert.Equal(0, Group(5));
        Assert.Equal(0, Group(6));
        // Budgets near a quarter of the need leave no room for the weights: they moved off the device and back.
        Assert.NotEqual("0 B", summary.Groups[7].Value);
    }
}
