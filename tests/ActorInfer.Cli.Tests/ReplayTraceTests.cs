using ActorInfer.Cli.Replay;

namespace ActorInfer.Cli.Tests;

/// <summary>How `replay` reads a trace and shapes its requests: pure functions, no node.</summary>
public sealed class ReplayTraceTests
{
    private static string Trace(string name) => Path.Combine(TestPaths.RepositoryRoot, "tests", "fixtures", "traces", $"azure-{name}-1min.csv");

    [Fact]
    public void A_trace_is_read_as_offsets_from_its_first_request_and_cut_at_the_duration()
    {
        var all = TraceFile.Read(Trace("conv"));
        Assert.Equal(191, all.Count);
        // 2023-11-16 18:15:46.6805900,374,44 then 18:15:50.9951690,396,109: 4.3145790 s apart.
        Assert.Equal(new TraceRequest(0, 374, 44, 2), all[0]);
        Assert.Equal(4.314579, all[1].At, 6);
        Assert.Equal((396, 109, 3), (all[1].ContextTokens, all[1].GeneratedTokens, all[1].Line));
        Assert.True(all.Zip(all.Skip(1)).All(p => p.Item1.At <= p.Item2.At));
        var first = TraceFile.Read(Trace("conv"), TimeSpan.FromSeconds(10));
        Assert.Equal(all.TakeWhile(r => r.At < 10), first);
        Assert.Equal(TimeSpan.FromMinutes(10), TraceFile.ParseDuration("10m", "--duration"));
        Assert.Equal(TimeSpan.FromSeconds(60), TraceFile.ParseDuration("60", "--duration"));
        Assert.Equal(TimeSpan.FromMilliseconds(250), TraceFile.ParseDuration("250ms", "--sample-every"));
        Assert.Equal(2, Assert.Throws<CliException>(() => TraceFile.ParseDuration("soon", "--duration")).ExitCode);
    }

    [Fact]
    public void Prompts_are_seeded_token_ids_of_the_traces_length_within_the_context()
    {
        var model = new ServedModelInfo("m", MaxModelLen: 64, VocabSize: 1000);
        var options = new ReplayOptions(10, null, null, Seed: 3, TimeSpan.FromSeconds(1));
        // 374 + 44 tokens do not fit a context of 64: the output first (44), the prompt the 20 left.
        var (prompt, maxTokens) = ReplayRun.Shape(new TraceRequest(0, 374, 44, 2), model, options, 0, 0);
        Assert.Equal((20, 44), (prompt.Length, maxTokens));
        Assert.All(prompt, id => Assert.InRange(id, 4, 999));
        // The same seed, tenant and request give the same prompt; another request another one.
        Assert.Equal(prompt, ReplayRun.Shape(new TraceRequest(0, 374, 44, 2), model, options, 0, 0).Prompt);
        Assert.NotEqual(prompt, ReplayRun.Shape(new TraceRequest(0, 374, 44, 2), model, options, 0, 1).Prompt);
        // Caps: at most 8 out and 16 in; a trace's 0 generated tokens still asks for one.
        var capped = options with { MaxPromptTokens = 16, MaxOutputTokens = 8 };
        Assert.Equal((16, 8), (ReplayRun.Shape(new TraceRequest(0, 374, 44, 2), model, capped, 0, 0).Prompt.Length,
            ReplayRun.Shape(new TraceRequest(0, 374, 44, 2), model, capped, 0, 0).MaxTokens));
        Assert.Equal((5, 1), (ReplayRun.Shape(new TraceRequest(0, 5, 0, 2), model, options, 0, 0).Prompt.Length,
            ReplayRun.Shape(new TraceRequest(0, 5, 0, 2), model, options, 0, 0).MaxTokens));
    }

    [Fact]
    public void The_longest_time_without_progress_counts_only_while_the_model_has_work()
    {
        // Layers done and work per sample, 0.5 s apart: work from 0.5 s; moves at 1.0 and 3.0 s; idle from 3.5 to 6.0 s;
        // work again at 6.5 and 7.0 s without a move.
        (double At, long Layers, bool Work)[] timeline =
        [
            (0.0, 0, false), (0.5, 0, true), (1.0, 3, true), (1.5, 3, true), (2.0, 3, true), (2.5, 3, true), (3.0, 7, true),
            (3.5, 7, false), (4.0, 7, false), (4.5, 7, false), (5.0, 7, false), (5.5, 7, false), (6.0, 7, false), (6.5, 7, true),
            (7.0, 7, true),
        ];
        var samples = timeline.Select(t => (t.At, new ModelProgress(t.Layers, 0, t.Work))).ToArray();
        // 1.0 -> 3.0 s: work and no move between the two moves (2.0 s). 3.0 -> 7.0 s has no move either, but the model was
        // idle from 3.5 s; its work from 6.5 s is 0.5 s old at the last sample.
        Assert.Equal(2.0, ReplaySummary.LongestWithoutProgress(samples), 9);
        Assert.Equal(0.0, ReplaySummary.LongestWithoutProgress(samples.Take(1).ToArray()));

        // In the summary: every model the node reports, a job's model that no trace feeds too, over the run's samples.
        var memory = timeline.Select(t => new MemorySample(t.At, new Dictionary<string, (long, long)> { ["chat"] = (1, 2), ["batch"] = (3, 4) })
        {
            Progress = new Dictionary<string, ModelProgress> { ["chat"] = new(0, 0, false), ["batch"] = new(100 + t.Layers, t.Layers / 3, t.Work) },
        }).ToArray();
        var result = new ReplayRun.Result([], memory, 7.0, "gpu", new Dictionary<string, double>(), new Dictionary<string, double>());
        var tenants = new[] { new ReplayTenant("chat", "conv.csv", [new TraceRequest(0, 8, 4, 2)]) };
        var progress = ReplaySummary.Build(tenants, result, new ReplayOptions(1, null, null, 0, TimeSpan.FromSeconds(0.5)), "url")["run"]!["progress"]!;
        Assert.Equal(7, (long)progress["batch"]!["layers_done"]!);
        Assert.Equal(2, (long)progress["batch"]!["decoding_steps"]!);
        Assert.Equal(2.0, (double)progress["batch"]!["longest_without_progress_seconds"]!, 9);
        // Work at both ends of a gap: 0.5 -> 3.0 s and 6.5 -> 7.0 s.
        Assert.Equal(3.0, (double)progress["batch"]!["seconds_with_work"]!, 9);
        Assert.Equal(0.0, (double)progress["chat"]!["longest_without_progress_seconds"]!);
    }

    /// <summary>
    /// The GPU as the device reports it, read from each /admin/state sample, goes into the summary per sample and as the
    /// run's mean beside the device's size; a node without CUDA reports none, and the run's figures are null.
    /// </summary>
    [Fact]
    public void The_device_s_own_used_memory_is_sampled_and_averaged_where_the_node_reports_it()
    {
        const string state = """
            {"budgets": {"gpu": 1000}, "models": [{"name": "chat", "bytes_in_use": {"gpu": 300}, "budgets": {"gpu": 600}}],
             "device": {"total_bytes": 2000, "used_bytes": USED}}
            """;
        MemorySample Sample(double at, string used) =>
            ReplayRun.Sample(at, System.Text.Json.JsonDocument.Parse(state.Replace("USED", used)).RootElement, "gpu");
        var first = Sample(0, "800");
        Assert.Equal((800L, 2000L), first.Device);
        Assert.Equal((300L, 600L), first.Models["chat"]);
        var tenants = new[] { new ReplayTenant("chat", "conv.csv", [new TraceRequest(0, 8, 4, 2)]) };
        var options = new ReplayOptions(1, null, null, 0, TimeSpan.FromSeconds(0.5));
        var result = new ReplayRun.Result([], [first, Sample(0.5, "1200")], 1.0, "gpu", new Dictionary<string, double>(), new Dictionary<string, double>());
        var run = ReplaySummary.Build(tenants, result, options, "url")["run"]!;
        // The picture draws the device's line beside the models'.
        var png = Path.Combine(TestPaths.TempDir(), "replay.png");
        ReplayChart.Draw(tenants, result, png, "with the device");
        Assert.True(new FileInfo(png).Length > 0);
        Assert.Equal(1000.0, (double)run["device_used_mean_bytes"]!);
        Assert.Equal(2000L, (long)run["device_total_bytes"]!);
        Assert.Equal(1200L, (long)run["memory"]![1]!["device_used"]!);

        var withoutCuda = ReplayRun.Sample(0, System.Text.Json.JsonDocument.Parse(state.Replace("""
            "device": {"total_bytes": 2000, "used_bytes": USED}
            """.Trim(), "\"device\": null")).RootElement, "gpu");
        Assert.Null(withoutCuda.Device);
        var cpuRun = ReplaySummary.Build(tenants, new ReplayRun.Result([], [withoutCuda], 1.0, "gpu", new Dictionary<string, double>(),
            new Dictionary<string, double>()), options, "url")["run"]!;
        Assert.Null(cpuRun["device_used_mean_bytes"]);
        Assert.Null(cpuRun["device_total_bytes"]);
    }

    [Fact]
    public void Percentiles_are_nearest_rank()
    {
        double[] values = [5, 1, 4, 2, 3];
        Assert.Equal(3, ReplaySummary.Percentile(values, 50));
        Assert.Equal(5, ReplaySummary.Percentile(values, 99));
        Assert.Equal(1, ReplaySummary.Percentile(values, 1));
        Assert.Null(ReplaySummary.Percentile([], 50));
    }
}
