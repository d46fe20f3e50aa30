using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.RegularExpressions;
using ActorInfer.TestSupport;

namespace ActorInfer.Gateway.Tests;

/// <summary>
/// <c>Idempotency-Key</c>: a completion retried with the same key after a SIGKILL and a restart yields one completion
/// (one job, run once, the same id and text to every retry); a job retried with its key is the same job. On SQLite and
/// on PostgreSQL.
/// </summary>
[Collection(ChaosCollection.Name)]
public sealed partial class IdempotencyTests
{
    private const string Key = "sk-idempotent";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    [GeneratedRegex(@"http: listening on (http://\S+)")]
    private static partial Regex Listening();

    private static HttpClient Client(NodeProcess node, TimeSpan timeout)
    {
        var line = node.Output.FirstOrDefault(Listening().IsMatch) ?? node.WaitForLine(Listening().IsMatch, Timeout);
        var address = Listening().Match(line).Groups[1].Value;
        var client = new HttpClient { BaseAddress = new Uri(address), Timeout = timeout };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        return client;
    }

    private static HttpRequestMessage Post(string path, string body, string? idempotencyKey)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = GatewayFixture.Json(body) };
        if (idempotencyKey is not null) request.Headers.Add("Idempotency-Key", idempotencyKey);
        return request;
    }

    private static async Task<JsonElement[]> Jobs(HttpClient client) =>
        (await GatewayFixture.ReadJson(await client.GetAsync("/v1/jobs"))).GetProperty("data").EnumerateArray().ToArray();

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgresql")]
    public async Task A_completion_retried_with_its_key_after_a_SIGKILL_and_a_restart_yields_one_completion(string provider)
    {
        using var persistence = NodePersistence.Of(provider);
        var dir = TestPaths.TempDir();
        var stalled = Path.Combine(dir, "stalled.conf");
        var running = Path.Combine(dir, "running.conf");
        // The first incarnation persists the request but cannot run it (no memory for any policy); the second runs.
        File.WriteAllText(stalled, $"actorinfer {{ model = \"models/opt-tiny\", memory.cpu-budget = 0\n{persistence.Hocon} }}");
        File.WriteAllText(running, $"actorinfer {{ model = \"models/opt-tiny\"\n{persistence.Hocon} }}");
        var data = Path.Combine(dir, "data");
        // Sampled without a seed: a second run would draw another seed, so a second run would show.
        const string body = """{"prompt": "Once upon a time", "max_tokens": 12, "temperature": 1.0}""";

        string persisted;
        using (var first = new NodeProcess("node", "--config", stalled, "--data-dir", data, "--port", "0", "--api-key", Key))
        {
            using var client = Client(first, TimeSpan.FromSeconds(2));
            using var poller = Client(first, Timeout);
            await Assert.ThrowsAnyAsync<TaskCanceledException>(() => client.SendAsync(Post("/v1/completions", body, "retry-me")));
            var jobs = await GatewayFixture.Poll(() => Jobs(poller), j => j.Length == 1, Timeout);
            Assert.Equal("queued", jobs[0].GetProperty("state").GetString());
            persisted = jobs[0].GetProperty("id").GetString()!;
            first.Kill();
        }

        using var second = new NodeProcess("node", "--config", running, "--data-dir", data, "--port", "0", "--api-key", Key);
        using var retrying = Client(second, Timeout);
        var answers = new List<JsonElement>();
        // The retry after the restart waits for the recovered job; the one after that is answered from its results.
        for (var attempt = 0; attempt < 2; attempt++)
        {
            using var response = await retrying.SendAsync(Post("/v1/completions", body, "retry-me"));
            answers.Add(await GatewayFixture.ReadJson(response));
            Assert.Equal(200, (int)response.StatusCode);
        }
        Assert.All(answers, a => Assert.Equal(persisted, a.GetProperty("id").GetString()));
        Assert.Equal(answers[0].GetProperty("choices")[0].GetProperty("text").GetString(), answers[1].GetProperty("choices")[0].GetProperty("text").GetString());
        var job = Assert.Single(await Jobs(retrying));
        Assert.Equal((persisted, "completed", 1), (job.GetProperty("id").GetString(), job.GetProperty("state").GetString(),
            job.GetProperty("counts").GetProperty("total").GetInt32()));

        // Without the key, or with another tenant-visible key, it is new work.
        using (var other = await retrying.SendAsync(Post("/v1/completions", body, "another-key")))
            Assert.NotEqual(persisted, (await GatewayFixture.ReadJson(other)).GetProperty("id").GetString());
        using (var bad = await retrying.SendAsync(Post("/v1/completions", body, "has a space")))
        {
            Assert.Equal(400, (int)bad.StatusCode);
            Assert.Equal("Idempotency-Key", (await GatewayFixture.ReadJson(bad)).GetProperty("error").GetProperty("param").GetString());
        }

        // A job retried with its key is the same job, submitted once.
        var ids = new List<string>();
        for (var attempt = 0; attempt < 2; attempt++)
        {
            using var response = await retrying.SendAsync(Post("/v1/jobs", string.Join("\n", JobTests.JobLines(3)), "job-key"));
            Assert.Equal(200, (int)response.StatusCode);
            ids.Add((await GatewayFixture.ReadJson(response)).GetProperty("id").GetString()!);
        }
        Assert.Equal(ids[0], ids[1]);
        Assert.Single(await Jobs(retrying), j => j.GetProperty("id").GetString() == ids[0]);
    }
}
