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
    public void Percentiles_are_nearest_rank()
    {
        double[] values = [5, 1, 4, 2, 3];
        Assert.Equal(3, ReplaySummary.Percentile(values, 50));
        Assert.Equal(5, ReplaySummary.Percentile(values, 99));
        Assert.Equal(1, ReplaySummary.Percentile(values, 1));
        Assert.Null(ReplaySummary.Percentile([], 50));
    }
}
