using System.Text.Json;
using ActorInfer.TestSupport;

namespace ActorInfer.Gateway.Tests;

/// <summary>
/// Batch jobs over HTTP: a 100-request job equals `generate --keep-going`; cancel persists; 429 when over the limit; jobs
/// and cancellations survive a restart on SQLite and on PostgreSQL.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class JobTests(GatewayFixture node)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    public static string[] JobLines(int count, int maxTokens = 8) => Enumerable.Range(0, count).Select(i => JsonSerializer.Serialize(new Dictionary<string, object?>
    {
        ["prompt"] = i % 2 == 0 ? $"Request number {i} says" : (object)Enumerable.Range(0, 1 + i % 5).Select(j => 2 + (i * 31 + j * 17) % 990).ToArray(),
        ["max_tokens"] = maxTokens,
        ["temperature"] = i % 4 == 0 ? 0.9 : 0.0,
        ["seed"] = i % 8 == 0 ? 100 + i : null,
        ["ignore_eos"] = true,
    })).ToArray();

    [Fact]
    public async Task A_job_of_100_requests_completes_and_its_results_equal_generates()
    {
        var lines = JobLines(99).Append("""{"prompt": "bad", "max_tokens": -1}""").ToArray();
        var expected = node.Generate(lines);
        using var client = node.Client(GatewayFixture.AliceKey);
        using var submitted = await client.PostAsync("/v1/jobs?priority=3", new StringContent(string.Join("\n", lines)));
        var job = await GatewayFixture.ReadJson(submitted);
        Assert.Equal(200, (int)submitted.StatusCode);
        var id = job.GetProperty("id").GetString()!;
        Assert.Equal(99, job.GetProperty("requests").GetInt32());
        Assert.Equal(1, job.GetProperty("invalid").GetInt32());

        var status = await GatewayFixture.Poll(async () => await GatewayFixture.ReadJson(await client.GetAsync($"/v1/jobs/{id}")),
            s => s.GetProperty("state").GetString() == "completed", Timeout);
        Assert.Equal(100, status.GetProperty("counts").GetProperty("total").GetInt32());
        Assert.Equal(1, status.GetProperty("counts").GetProperty("failed").GetInt32());
        Assert.Equal(3, status.GetProperty("priority").GetInt32());
        Assert.Equal(1.0, status.GetProperty("progress").GetDouble());

        using var results = await client.GetAsync($"/v1/jobs/{id}/results");
        Assert.Equal(200, (int)results.StatusCode);
        var actual = (await results.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(expected, actual);

        var list = await GatewayFixture.ReadJson(await client.GetAsync("/v1/jobs"));
        Assert.Contains(list.GetProperty("data").EnumerateArray(), j => j.GetProperty("id").GetString() == id);
    }

    /// <summary>With the CPU budget at 0 no policy fits, so nothing runs: queued jobs stay queued until cancelled.</summary>
    [Fact]
    public async Task Cancel_is_persisted_and_a_tenant_over_its_queue_limit_gets_429_with_Retry_After()
    {
        using var admin = node.Client(GatewayFixture.AdminKey);
        using var carol = node.Client(GatewayFixture.CarolKey);
        using var alice = node.Client(GatewayFixture.AliceKey);
        try
        {
            Assert.Equal(200, (int)(await admin.PostAsync("/admin/pressure", GatewayFixture.Json("""{"tier": "cpu", "budget": 0}"""))).StatusCode);
            await GatewayFixture.Poll(async () => await GatewayFixture.ReadJson(await admin.GetAsync("/admin/state")),
                s => s.GetProperty("policy").ValueKind == JsonValueKind.Null, Timeout);

            var job = await GatewayFixture.ReadJson(await carol.PostAsync("/v1/jobs", new StringContent(string.Join("\n", JobLines(2)))));
            var id = job.GetProperty("id").GetString()!;
            Assert.Equal("queued", (await GatewayFixture.ReadJson(await carol.GetAsync($"/v1/jobs/{id}"))).GetProperty("state").GetString());

            using var refused = await carol.PostAsync("/v1/completions", GatewayFixture.Json("""{"prompt": "one more", "max_tokens": 2}"""));
            Assert.Equal(429, (int)refused.StatusCode);
            Assert.True(refused.Headers.RetryAfter?.Delta >= TimeSpan.FromSeconds(1));
            var error = (await GatewayFixture.ReadJson(refused)).GetProperty("error");
            Assert.Equal("rate_limit_error", error.GetProperty("type").GetString());
            // Another tenant is not held back by carol's queue.
            var other = await GatewayFixture.ReadJson(await alice.PostAsync("/v1/jobs", new StringContent(JobLines(1)[0])));

            using var cancelled = await carol.DeleteAsync($"/v1/jobs/{id}");
            Assert.Equal("cancelled", (await GatewayFixture.ReadJson(cancelled)).GetProperty("state").GetString());
            var results = (await (await carol.GetAsync($"/v1/jobs/{id}/results")).Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(2, results.Length);
            Assert.All(results, l => Assert.Contains("cancelled", l));
            Assert.Equal(200, (int)(await alice.DeleteAsync($"/v1/jobs/{other.GetProperty("id").GetString()}")).StatusCode);

            // The queue is free again: carol is admitted (the work waits for memory).
            var again = await GatewayFixture.Poll(async () => (int)(await carol.PostAsync("/v1/jobs", new StringContent(JobLines(1)[0]))).StatusCode,
                code => code != 429, Timeout);
            Assert.Equal(200, again);
        }
        finally
        {
            await admin.PostAsync("/admin/pressure", GatewayFixture.Json("""{"tier": "cpu", "budget": "clear"}"""));
        }
        await GatewayFixture.Poll(async () => await GatewayFixture.ReadJson(await admin.GetAsync("/admin/state")),
            s => s.GetProperty("policy").ValueKind == JsonValueKind.String, Timeout);
        using var served = await alice.PostAsync("/v1/completions", GatewayFixture.Json("""{"prompt": "still serving", "max_tokens": 3}"""));
        Assert.Equal(200, (int)served.StatusCode);
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgresql")]
    public async Task A_cancelled_job_stays_cancelled_after_the_node_restarts(string provider)
    {
        // The cancellation is an event in the journal: recovery rebuilds the state from it.
        using var persistence = NodePersistence.Of(provider);
        var dir = GatewayFixture.TempDir();
        var config = Path.Combine(dir, "node.conf");
        File.WriteAllText(config, $$"""
            actorinfer {
              model = "models/opt-tiny"
              memory.cpu-budget = 0
              http.enabled = on
              {{persistence.Hocon}}
            }
            """);
        var data = Path.Combine(dir, "data");
        string id;
        await using (var first = await StartedNode.Start(config, data))
        {
            using var client = first.Client();
            id = (await GatewayFixture.ReadJson(await client.PostAsync("/v1/jobs", new StringContent(string.Join("\n", JobLines(3)))))).GetProperty("id").GetString()!;
            Assert.Equal("cancelled", (await GatewayFixture.ReadJson(await client.DeleteAsync($"/v1/jobs/{id}"))).GetProperty("state").GetString());
        }
        await using (var second = await StartedNode.Start(config, data))
        {
            using var client = second.Client();
            var status = await GatewayFixture.ReadJson(await client.GetAsync($"/v1/jobs/{id}"));
            Assert.Equal("cancelled", status.GetProperty("state").GetString());
            Assert.Equal(3, status.GetProperty("counts").GetProperty("failed").GetInt32());
        }
        Assert.Equal(provider == "sqlite", File.Exists(Path.Combine(data, "persistence", "journal.db")));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgresql")]
    public async Task An_accepted_job_survives_a_restart_and_completes_with_generates_results(string provider)
    {
        using var persistence = NodePersistence.Of(provider);
        var dir = GatewayFixture.TempDir();
        var stalled = Path.Combine(dir, "stalled.conf");
        var running = Path.Combine(dir, "running.conf");
        // The first incarnation accepts but cannot run (no memory for any policy); the second runs.
        File.WriteAllText(stalled, $"actorinfer {{ model = \"models/opt-tiny\", memory.cpu-budget = 0\n{persistence.Hocon} }}");
        File.WriteAllText(running, $"actorinfer {{ model = \"models/opt-tiny\"\n{persistence.Hocon} }}");
        var data = Path.Combine(dir, "data");
        var lines = JobLines(20);
        string id;
        await using (var first = await StartedNode.Start(stalled, data))
        {
            using var client = first.Client();
            id = (await GatewayFixture.ReadJson(await client.PostAsync("/v1/jobs", new StringContent(string.Join("\n", lines))))).GetProperty("id").GetString()!;
            Assert.Equal("queued", (await GatewayFixture.ReadJson(await client.GetAsync($"/v1/jobs/{id}"))).GetProperty("state").GetString());
        }
        await using (var second = await StartedNode.Start(running, data))
        {
            using var client = second.Client();
            await GatewayFixture.Poll(async () => await GatewayFixture.ReadJson(await client.GetAsync($"/v1/jobs/{id}")),
                s => s.GetProperty("state").GetString() == "completed", Timeout);
            var results = (await (await client.GetAsync($"/v1/jobs/{id}/results")).Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(node.Generate(lines), results);
        }
        Assert.Equal(provider == "sqlite", File.Exists(Path.Combine(data, "persistence", "journal.db")));
    }
}
