using System.Net;
using System.Net.Sockets;

namespace ActorInfer.Cli.Tests;

/// <summary>
/// The built `actorinfer` run as a separate process, as scripts and pipelines run it: every subcommand exits 0 on
/// success, and non-zero with exactly one `error:` line on failure, shutdown included.
/// </summary>
public sealed class ProgramExitTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(5);
    private static string Model => Path.Combine(TestPaths.RepositoryRoot, "models", "opt-tiny");
    private static string Prompts => Path.Combine(TestPaths.RepositoryRoot, "examples", "prompts.jsonl");

    private static int ErrorLines(IReadOnlyList<string> output) => output.Count(l => l.StartsWith("stderr: error:", StringComparison.Ordinal));

    private static void AssertSucceeded((int ExitCode, IReadOnlyList<string> Output) run)
    {
        var all = string.Join("\n", run.Output);
        Assert.True(run.ExitCode == 0, $"exit {run.ExitCode}:\n{all}");
        Assert.True(ErrorLines(run.Output) == 0, all);
    }

    [Fact]
    public void Generate_on_the_bundled_model_exits_0_in_20_of_20_runs()
    {
        var dir = TestPaths.TempDir();
        var codes = new List<int>();
        for (var i = 0; i < 20; i++)
        {
            var output = Path.Combine(dir, $"out-{i}.jsonl");
            var run = NodeProcess.Run(Limit, "generate", "--model", Model, "--input", Prompts, "--output", output);
            codes.Add(run.ExitCode);
            Assert.True(ErrorLines(run.Output) == 0, string.Join("\n", run.Output));
            Assert.Equal(File.ReadAllLines(Prompts).Length, File.ReadAllLines(output).Length);
        }
        Assert.Equal(Enumerable.Repeat(0, 20), codes);
    }

    public static TheoryData<string> Commands => ["generate actors", "generate direct", "generate pressure", "generate config", "bench", "bench direct",
        "plan", "info", "report", "pressure", "version"];

    [Theory]
    [MemberData(nameof(Commands))]
    public void Every_subcommand_exits_0_on_success(string name)
    {
        var dir = TestPaths.TempDir();
        var output = Path.Combine(dir, "out.jsonl");
        string[] generate = ["generate", "--model", Model, "--input", Prompts, "--output", output];
        string[] bench = ["bench", "--model", Model, "--prompt-len", "8", "--gen-len", "4", "--gpu-batch-size", "2", "--repeat", "1"];
        var pressure = Path.Combine(dir, "pressure.jsonl");
        File.WriteAllText(pressure, "{\"at_step\": 1, \"tier\": \"gpu\", \"budget\": \"1GiB\"}\n");
        var runDir = Path.Combine(dir, "run");
        switch (name)
        {
            case "generate actors":
                var run = NodeProcess.Run(Limit, [.. generate, "--engine", "actors"]);
                AssertSucceeded(run);
                // Redirected output gets plain progress lines, with the rate and the time left.
                Assert.Contains(run.Output, l => l.StartsWith("stderr: generate: 4/4 (100%)", StringComparison.Ordinal) && l.Contains(" tokens/s, done"));
                break;
            case "generate direct":
                AssertSucceeded(NodeProcess.Run(Limit, [.. generate, "--engine", "direct"]));
                break;
            case "generate pressure":
                AssertSucceeded(NodeProcess.Run(Limit, [.. generate, "--pressure", pressure]));
                break;
            case "generate config":
                // The node of a HOCON file, in this process: the file's model and planner, and the same tokens as above.
                AssertSucceeded(NodeProcess.Run(Limit, "generate", "--config", "hocon/single-node.conf", "--input", Prompts, "--output", output));
                var reference = Path.Combine(dir, "reference.jsonl");
                AssertSucceeded(NodeProcess.Run(Limit, "generate", "--model", Model, "--input", Prompts, "--output", reference));
                Assert.Equal(File.ReadAllLines(reference), File.ReadAllLines(output));
                break;
            case "bench":
                AssertSucceeded(NodeProcess.Run(Limit, bench));
                return;
            case "bench direct":
                AssertSucceeded(NodeProcess.Run(Limit, [.. bench, "--engine", "direct", "--disk-dir", Path.Combine(dir, "made-for-bench")]));
                Assert.True(Directory.Exists(Path.Combine(dir, "made-for-bench")), "--disk-dir was not made");
                return;
            case "plan":
                AssertSucceeded(NodeProcess.Run(Limit, "plan", "--model", "opt-30b", "--prompt-len", "512", "--gen-len", "32",
                    "--gpu-mem", "16GB", "--cpu-mem", "208GB", "--disk-mem", "1.5TB"));
                return;
            case "info":
                AssertSucceeded(NodeProcess.Run(Limit, "info", "--model", Model));
                return;
            case "report":
                AssertSucceeded(NodeProcess.Run(Limit, [.. generate, "--pressure", pressure, "--run-dir", runDir]));
                AssertSucceeded(NodeProcess.Run(Limit, "report", "--run", runDir));
                Assert.True(new FileInfo(Path.Combine(runDir, "report.png")).Length > 0);
                return;
            case "pressure":
                AssertSucceeded(NodeProcess.Run(Limit, "pressure", "--node", dir, "--tier", "gpu", "--budget", "2GiB"));
                Assert.Single(Directory.GetFiles(Path.Combine(dir, "control")));
                return;
            case "version":
                var version = NodeProcess.Run(Limit, "version");
                var flag = NodeProcess.Run(Limit, "--version");
                AssertSucceeded(version);
                AssertSucceeded(flag);
                // One version string: `version` names the program with the string `--version` prints.
                Assert.Equal($"actorinfer {flag.Output[0]}", version.Output[0]);
                return;
            default:
                throw new ArgumentException(name);
        }
        Assert.Equal(File.ReadAllLines(Prompts).Length, File.ReadAllLines(output).Length);
    }

    public static TheoryData<string, string[], string> Failures => new()
    {
        { "a missing input file", ["generate", "--model", "models/opt-tiny", "--input", "no-such.jsonl", "--output", "out.jsonl"], "input file not found" },
        { "an ambiguous size", ["plan", "--model", "opt-125m", "--prompt-len", "8", "--gen-len", "4", "--gpu-mem", "8G"], "ambiguous" },
        { "an unknown model", ["info", "--model", "no-such-model"], "no-such-model" },
        { "a run folder without a timeline", ["report", "--run", "hocon"], "timeline" },
        { "a missing data folder", ["pressure", "--node", "no-such-folder", "--tier", "gpu", "--budget", "1GiB"], "does not exist" },
        { "cpu attention auto without a search", ["bench", "--model", "models/opt-tiny", "--prompt-len", "8", "--gen-len", "4", "--cpu-attention", "auto"], "--policy auto" },
        { "an unknown option", ["info", "--model", "models/opt-tiny", "--colour"], "--colour" },
        { "a traced step past the generation", ["bench", "--model", "models/opt-tiny", "--prompt-len", "8", "--gen-len", "4", "--gpu-batch-size", "2", "--trace", "t.json", "--trace-step", "4"], "--trace-step must be a decoding step, 1 to 3" },
        { "an unknown weight placement", ["plan", "--model", "opt-125m", "--prompt-len", "8", "--gen-len", "4", "--weight-placement", "even"], "--weight-placement: 'even' is not one of flexgen, spread" },
        { "an unknown decoding attention", ["bench", "--model", "models/opt-tiny", "--prompt-len", "8", "--gen-len", "4", "--decode-attention", "fastest"], "--decode-attention: 'fastest' is not one of products, cudnn, efficient, fused" },
        { "neither a model nor a node's file", ["generate", "--input", "examples/prompts.jsonl", "--output", "out.jsonl"], "--config" },
        { "a node's file and a placement flag", ["generate", "--config", "hocon/single-node.conf", "--gpu-mem", "1GiB", "--input", "examples/prompts.jsonl", "--output", "out.jsonl"], "--gpu-mem" },
    };

    [Fact]
    public void A_node_asked_to_pin_more_cpu_memory_than_the_host_has_refuses_to_start()
    {
        var dir = TestPaths.TempDir();
        var conf = Path.Combine(dir, "pinned.conf");
        File.WriteAllText(conf, "actorinfer { memory { cpu-budget = \"1000TiB\", pin-cpu-budget = on } }\n");
        var run = NodeProcess.Run(Limit, "node", "--config", conf, "--model", Model, "--data-dir", Path.Combine(dir, "data"), "--port", "0", "--api-key", "k");
        var all = string.Join("\n", run.Output);
        Assert.True(run.ExitCode != 0, $"exit 0\n{all}");
        Assert.Contains("pin-cpu-budget: the cpu-budget", run.Output.Single(l => l.StartsWith("stderr: error:", StringComparison.Ordinal)));
    }

    [Theory]
    [MemberData(nameof(Failures))]
    public void A_failure_exits_non_zero_with_one_error_line(string what, string[] args, string named)
    {
        var run = NodeProcess.Run(Limit, args);
        var all = string.Join("\n", run.Output);
        Assert.True(run.ExitCode != 0, $"{what}: exit 0\n{all}");
        Assert.True(ErrorLines(run.Output) == 1, $"{what}: not one error line\n{all}");
        Assert.Contains(named, run.Output.Single(l => l.StartsWith("stderr: error:", StringComparison.Ordinal)));
    }

    [Fact]
    public void A_node_without_keys_says_so_at_start_and_exits_0_on_SIGTERM()
    {
        var dir = TestPaths.TempDir();
        using var node = new NodeProcess("node", "--config", "hocon/single-node.conf", "--data-dir", Path.Combine(dir, "data"), "--port", "0");
        // The warning is on stderr, the listening line on stdout: either may be read first.
        node.WaitForLines(Limit, l => l.StartsWith("http: listening on", StringComparison.Ordinal),
            l => l.StartsWith("stderr: warning: no tenant key", StringComparison.Ordinal) && l.Contains("--api-key"));
        node.Terminate();
        Assert.Equal(0, node.WaitForExit(Limit));
        Assert.Contains("node stopped", node.AllOutput());
        Assert.Equal(0, ErrorLines(node.AllOutput()));
    }

    [Fact]
    public void A_taken_port_is_one_error_line_without_a_stack_trace()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;
        var dir = TestPaths.TempDir();
        var run = NodeProcess.Run(Limit, "node", "--config", "hocon/single-node.conf", "--data-dir", Path.Combine(dir, "data"),
            "--port", $"{port}", "--api-key", "sk-test");
        var all = string.Join("\n", run.Output);
        Assert.True(run.ExitCode != 0, all);
        Assert.True(ErrorLines(run.Output) == 1, all);
        Assert.Contains($"{port}", run.Output.Single(l => l.StartsWith("stderr: error:", StringComparison.Ordinal)));
        Assert.DoesNotContain(run.Output, l => l.Contains("Exception", StringComparison.Ordinal) || l.TrimStart().StartsWith("at ", StringComparison.Ordinal));
    }
}

/// <summary>`profile` measures this machine for minutes on a small CPU: a class of its own, run beside the others.</summary>
public sealed class ProfileExitTests
{
    [Fact]
    public void Profile_exits_0_and_writes_a_profile()
    {
        var dir = TestPaths.TempDir();
        var output = Path.Combine(dir, "profile.json");
        var run = NodeProcess.Run(TimeSpan.FromMinutes(10), "profile", "--device", "cpu", "--model", "models/opt-tiny",
            "--disk-dir", Path.Combine(dir, "made-for-profile"), "--output", output);
        Assert.True(run.ExitCode == 0, string.Join("\n", run.Output));
        Assert.True(File.Exists(output));
        Assert.True(Directory.Exists(Path.Combine(dir, "made-for-profile")));
    }
}
