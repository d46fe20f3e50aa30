using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.RegularExpressions;
using ActorInfer.Actors.Node;
using ActorInfer.TestSupport;

namespace ActorInfer.Gateway.Tests;

/// <summary>One owner per data folder: a second node on a running node's folder refuses at start and harms nothing.</summary>
[Collection(ChaosCollection.Name)]
public sealed partial class DataFolderLockTests
{
    private const string Key = "sk-lock";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    [GeneratedRegex(@"http: listening on (http://\S+)")]
    private static partial Regex Listening();

    [Fact]
    public async Task A_second_node_on_a_running_nodes_data_folder_exits_non_zero_naming_the_holder_and_the_first_serves_on()
    {
        var dir = TestPaths.TempDir();
        var config = Path.Combine(dir, "node.conf");
        File.WriteAllText(config, "actorinfer { model = \"models/opt-tiny\" }");
        var data = Path.Combine(dir, "data");
        string[] args = ["node", "--config", config, "--data-dir", data, "--port", "0", "--api-key", Key];

        using var first = new NodeProcess(args);
        var address = Listening().Match(first.WaitForLine(Listening().IsMatch, Timeout)).Groups[1].Value;
        using var client = new HttpClient { BaseAddress = new Uri(address), Timeout = Timeout };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        var lines = Enumerable.Range(0, 40).Select(i => $$"""{"id": "r{{i}}", "prompt": "line {{i}}", "max_tokens": 8, "temperature": 0, "ignore_eos": true}""");
        string job;
        using (var submitted = await client.PostAsync("/v1/jobs", new StringContent(string.Join("\n", lines))))
        {
            Assert.Equal(200, (int)submitted.StatusCode);
            job = (await GatewayFixture.ReadJson(submitted)).GetProperty("id").GetString()!;
        }
        var journal = Path.Combine(data, "persistence", "journal.db");
        var journalBefore = File.GetLastWriteTimeUtc(journal);

        using (var second = new NodeProcess(args))
        {
            Assert.NotEqual(0, second.WaitForExit(Timeout));
            var output = second.AllOutput();
            var error = Assert.Single(output, l => l.StartsWith("stderr: error:", StringComparison.Ordinal));
            Assert.Contains($"pid {first.Id}", error);
            Assert.Contains($"host {Environment.MachineName}", error);
            Assert.Contains(data, error);
            // Refused before anything in the folder was read: no recovery, no listening, nothing else said.
            Assert.Equal([error], output);
        }

        // The first node's work is untouched: the job finishes once per line, completions are served, it stays ready.
        using (var completion = await client.PostAsync("/v1/completions",
                   GatewayFixture.Json("""{"prompt": "after", "max_tokens": 3, "temperature": 0}""")))
            Assert.Equal(200, (int)completion.StatusCode);
        await GatewayFixture.Poll(async () => (await GatewayFixture.ReadJson(await client.GetAsync($"/v1/jobs/{job}"))).GetProperty("state").GetString(),
            s => s is "completed" or "failed" or "cancelled", Timeout);
        var results = (await client.GetStringAsync($"/v1/jobs/{job}/results")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(lines.Select((_, i) => $"r{i}"), results.Select(l => JsonDocument.Parse(l).RootElement.GetProperty("id").GetString()));
        Assert.DoesNotContain(results, l => l.Contains("\"error\":", StringComparison.Ordinal));
        Assert.Equal(200, (int)(await client.GetAsync("/readyz")).StatusCode);
        Assert.True(File.GetLastWriteTimeUtc(journal) >= journalBefore);
        Assert.DoesNotContain(first.AllOutput(), l => l.Contains("UNIQUE constraint", StringComparison.Ordinal));
    }

    [Fact]
    public void The_lock_is_released_when_its_holder_is_disposed_and_refused_while_held()
    {
        var data = TestPaths.TempDir();
        using (var held = DataFolderLock.Acquire(data))
        {
            var refused = Assert.Throws<DataFolderLockedException>(() => DataFolderLock.Acquire(data));
            Assert.Contains($"pid {Environment.ProcessId}", refused.Holder);
        }
        using var again = DataFolderLock.Acquire(data);
        Assert.Contains($"pid {Environment.ProcessId}", File.ReadAllText(Path.Combine(data, DataFolderLock.FileName)));
    }
}
