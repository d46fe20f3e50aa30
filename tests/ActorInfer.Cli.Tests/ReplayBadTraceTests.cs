namespace ActorInfer.Cli.Tests;

/// <summary>
/// `actorinfer replay` (the built program, as its own process) refuses a trace it cannot replay before it sends anything:
/// exit code 2 and one `error:` line naming the file and the line.
/// </summary>
public sealed class ReplayBadTraceTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(2);

    public static TheoryData<string, string, string> BadTraces => new()
    {
        // name, file contents, what the error line must say after the file's name
        { "missing column", "TIMESTAMP,ContextTokens\n2023-11-16 18:15:46.6805900,374\n", ":1: the header has no column 'GeneratedTokens'" },
        { "unsorted", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:50.99,396,109\n2023-11-16 18:15:49.00,879,55\n",
            ":4: the timestamp 2023-11-16 18:15:49.00 is before the previous line's" },
        { "bad count", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:50.99,many,109\n",
            ":3: ContextTokens 'many' is not a non-negative integer" },
        { "bad timestamp", "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,374,44\n", ":2: TIMESTAMP 'yesterday' is neither" },
        { "short line", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,374\n", ":2: 2 fields where the header has 3" },
    };

    [Theory]
    [MemberData(nameof(BadTraces))]
    public void A_bad_trace_file_is_refused_with_its_line_named(string name, string contents, string expected)
    {
        var dir = TestPaths.TempDir();
        var good = Path.Combine(dir, "good.csv");
        File.WriteAllText(good, "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,374,44\n");
        var bad = Path.Combine(dir, name.Replace(' ', '-') + ".csv");
        File.WriteAllText(bad, contents);
        // The node is never reached: the traces are read first (nothing listens on port 9).
        var run = NodeProcess.Run(Limit, "replay", "--url", "http://127.0.0.1:9", "--api-key", "sk-none", "--trace", good, "--model", "a",
            "--trace", bad, "--model", "b", "--output", Path.Combine(dir, "out"));
        Assert.Equal(2, run.ExitCode);
        var error = Assert.Single(run.Output, l => l.StartsWith("stderr: error:", StringComparison.Ordinal));
        Assert.Contains(bad + expected, error);
        Assert.False(Directory.Exists(Path.Combine(dir, "out")));
    }

    [Fact]
    public void Traces_and_models_come_in_pairs()
    {
        var run = NodeProcess.Run(Limit, "replay", "--url", "http://127.0.0.1:9", "--api-key", "sk-none", "--trace", "a.csv", "--trace", "b.csv",
            "--model", "a");
        Assert.Equal(2, run.ExitCode);
        Assert.Contains(run.Output, l => l.Contains("error: give one --model per --trace (2 --trace, 1 --model)", StringComparison.Ordinal));
    }
}
