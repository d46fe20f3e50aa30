using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using ActorInfer.TestSupport;
using Npgsql;

namespace ActorInfer.Actors.Tests;

/// <summary>`actorinfer node` as a real process: a job survives SIGKILL and completes exactly once, identically.</summary>
public sealed partial class NodeEndToEndSpecs
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private static string Config(string dir, string name = "node.conf", string overlay = "")
    {
        var path = Path.Combine(dir, name);
        // The overlay first: the test's keys win.
        File.WriteAllText(path, overlay + "\n" + """
            actorinfer {
              model = "models/opt-tiny"
              scheduler { max-gpu-batch-size = 2, max-gpu-batches = 2 }
              control.poll-interval = 50ms
              persistence.snapshot-every = 10
            }
            """);
        return path;
    }

    /// <summary>
    /// The node's file for a provider: on PostgreSQL with hocon/persistence-postgresql.conf merged in as it is, and the
    /// connection string in the environment variable that file names.
    /// </summary>
    private static (string Config, Dictionary<string, string> Environment) Config(string dir, NodePersistence persistence) =>
        persistence.ConnectionString is { } connection
            ? (Config(dir, "postgresql.conf", File.ReadAllText(Path.Combine(TestModels.RepositoryRoot, "hocon", "persistence-postgresql.conf"))),
                new() { ["ACTORINFER_POSTGRES_CONNECTION"] = connection })
            : (Config(dir), new());

    private static void WriteJob(string dataDir, string name)
    {
        var lines = Enumerable.Range(0, 200).Select(i => JsonSerializer.Serialize(new Dictionary<string, object?>
        {
            ["prompt"] = Enumerable.Range(0, 1 + i % 6).Select(j => 2 + (i * 31 + j * 17) % 990).ToArray(),
            ["max_tokens"] = 32,
            ["temperature"] = i % 4 == 0 ? 0.9 : 0.0,
            ["seed"] = i % 8 == 0 ? 100 + i : null,
            ["ignore_eos"] = true,
        }));
        var inbox = Path.Combine(dataDir, "inbox");
        Directory.CreateDirectory(inbox);
        var temp = Path.Combine(inbox, name + ".part");
        File.WriteAllLines(temp, lines.Append("{\"prompt\": \"no\", \"max_tokens\": -1}"));
        File.Move(temp, Path.Combine(inbox, name + ".jsonl"));
    }

    [GeneratedRegex(@"job crash: (\d+)/201 done")]
    private static partial Regex Progress();

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgresql")]
    public void A_job_survives_SIGKILL_and_completes_exactly_once_with_the_uninterrupted_output(string provider)
    {
        var dir = TestModels.TempDir();
        using var persistence = NodePersistence.Of(provider);
        var (config, environment) = Config(dir, persistence);

        // The uninterrupted run (on SQLite: the output does not depend on the journal).
        var reference = Path.Combine(dir, "reference");
        WriteJob(reference, "crash");
        using (var node = new NodeProcess("node", "--config", Config(dir), "--data-dir", reference))
            node.WaitForLine(l => l.Contains("job crash complete"), Timeout);
        var expected = File.ReadAllLines(Path.Combine(reference, "results", "crash.jsonl"));

        // The same job, killed once a tenth of it is done.
        var data = Path.Combine(dir, "crashed");
        WriteJob(data, "crash");
        using (var node = new NodeProcess(environment, "node", "--config", config, "--data-dir", data))
        {
            node.WaitForLine(l => Progress().Match(l) is { Success: true } m && int.Parse(m.Groups[1].Value) >= 20, Timeout);
            node.Kill();
        }
        Assert.False(File.Exists(Path.Combine(data, "results", "crash.jsonl")), "the node was to be killed mid-job");

        using (var node = new NodeProcess(environment, "node", "--config", config, "--data-dir", data))
        {
            var recovered = node.WaitForLine(l => l.Contains("recovered 1 jobs"), Timeout);
            var pending = int.Parse(Regex.Match(recovered, @"(\d+) requests to run").Groups[1].Value);
            Assert.InRange(pending, 1, 200 - 19);
            node.WaitForLine(l => l.Contains("job crash complete"), Timeout);
        }
        var actual = File.ReadAllLines(Path.Combine(data, "results", "crash.jsonl"));
        Assert.Equal(201, actual.Length);
        Assert.Equal(201, actual.Select(l => JsonDocument.Parse(l).RootElement.GetProperty("id").GetString()).Distinct().Count());
        Assert.Contains("\"param\":\"max_tokens\"", actual[^1]);
        Assert.Equal(expected, actual);

        // A third start finds nothing to do and writes nothing again.
        var written = File.GetLastWriteTimeUtc(Path.Combine(data, "results", "crash.jsonl"));
        using (var node = new NodeProcess(environment, "node", "--config", config, "--data-dir", data))
            node.WaitForLine(l => l.Contains("recovered 1 jobs, 0 requests to run"), Timeout);
        Assert.Equal(written, File.GetLastWriteTimeUtc(Path.Combine(data, "results", "crash.jsonl")));
        Assert.Equal(provider == "sqlite", File.Exists(Path.Combine(data, "persistence", "journal.db")));
    }

    [Fact]
    public void A_bad_config_is_refused_before_the_node_starts()
    {
        var dir = TestModels.TempDir();
        var config = Path.Combine(dir, "bad.conf");
        File.WriteAllText(config, "actorinfer { scheduler { max-gpu-batchsize = 4 } }");
        using var node = new NodeProcess("node", "--config", config, "--data-dir", Path.Combine(dir, "data"));
        node.WaitForLine(l => l.Contains("actorinfer.scheduler.max-gpu-batchsize") && l.Contains("unknown key"), Timeout);
        Assert.Equal(2, node.WaitForExit(Timeout));
        Assert.False(Directory.Exists(Path.Combine(dir, "data")), "nothing was created");
    }

    /// <summary>A port on the loopback that nothing listens on (taken and given back).</summary>
    private static int ClosedPort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    [Theory]
    [InlineData("unreachable", "cannot be used")]
    [InlineData("wrong password", "cannot be used")]
    [InlineData("malformed", "is not an Npgsql connection string")]
    [InlineData("missing", "is required when persistence.provider = postgresql")]
    public void A_node_whose_PostgreSQL_journal_cannot_be_used_exits_with_one_error_line_naming_it(string problem, string expected)
    {
        var dir = TestModels.TempDir();
        var server = new NpgsqlConnectionStringBuilder(PostgresTestDatabase.ServerConnectionString);
        string? connection = problem switch
        {
            "unreachable" => $"Host=127.0.0.1;Port={ClosedPort()};Database=actorinfer;Username=actorinfer;Password=not-the-secret",
            "wrong password" => new NpgsqlConnectionStringBuilder(server.ConnectionString) { Password = "not-the-secret" }.ConnectionString,
            "malformed" => "Hots=127.0.0.1;Password=not-the-secret",
            _ => null,
        };
        var environment = connection is null ? new Dictionary<string, string>() : new() { ["ACTORINFER_POSTGRES_CONNECTION"] = connection };
        var config = Config(dir, "postgresql.conf", File.ReadAllText(Path.Combine(TestModels.RepositoryRoot, "hocon", "persistence-postgresql.conf")));
        using var node = new NodeProcess(environment, "node", "--config", config, "--data-dir", Path.Combine(dir, "data"));
        Assert.Equal(2, node.WaitForExit(Timeout));
        var errors = node.AllOutput().Where(l => l.StartsWith("stderr: error:", StringComparison.Ordinal)).ToList();
        var error = Assert.Single(errors);
        Assert.Contains("actorinfer.persistence.postgresql.connection-string", error);
        Assert.Contains(expected, error);
        if (problem == "unreachable") Assert.Contains("127.0.0.1:", error);
        Assert.DoesNotContain("not-the-secret", string.Join("\n", node.AllOutput()));
    }

    [Fact]
    public void A_second_node_on_the_same_PostgreSQL_journal_exits_naming_the_holder_and_starts_once_it_stopped()
    {
        using var persistence = NodePersistence.Of("postgresql");
        var dir = TestModels.TempDir();
        var (config, environment) = Config(dir, persistence);
        using var first = new NodeProcess(environment, "node", "--config", config, "--data-dir", Path.Combine(dir, "first"));
        first.WaitForLine(l => l.Contains("node started"), Timeout);

        // Another data folder, the same schema: its job store would overwrite the first node's.
        using (var second = new NodeProcess(environment, "node", "--config", config, "--data-dir", Path.Combine(dir, "second")))
        {
            Assert.Equal(1, second.WaitForExit(Timeout));
            var error = Assert.Single(second.AllOutput(), l => l.StartsWith("stderr: error:", StringComparison.Ordinal));
            // The whole line in the message when it is not the expected one.
            // The holder is named as a node with its process id (the launcher's pid when the CLI ran under a wrapper).
            Assert.True(error.Contains("the journal in schema 'public'") &&
                        System.Text.RegularExpressions.Regex.IsMatch(error, @"in use by actorinfer node \(pid \d+ on "), error);
        }

        first.Terminate();
        Assert.Equal(0, first.WaitForExit(Timeout));
        using var third = new NodeProcess(environment, "node", "--config", config, "--data-dir", Path.Combine(dir, "second"));
        third.WaitForLine(l => l.Contains("node started"), Timeout);
    }

    [Fact]
    public void The_pressure_command_reaches_the_memory_actor()
    {
        var dir = TestModels.TempDir();
        var data = Path.Combine(dir, "data");
        using var node = new NodeProcess("node", "--config", Config(dir), "--data-dir", data);
        node.WaitForLine(l => l.Contains("node started"), Timeout);
        using (var pressure = new NodeProcess("pressure", "--node", data, "--tier", "cpu", "--budget", "1KiB"))
            Assert.Equal(0, pressure.WaitForExit(Timeout));
        // The first line comes on stdout, the second on stderr: either may be read first.
        node.WaitForLines(Timeout, l => l.Contains("Cpu budget is now 1KiB (operator)"), l => l.Contains("no policy fits"));
    }
}
