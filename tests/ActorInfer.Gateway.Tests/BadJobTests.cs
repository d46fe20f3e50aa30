using System.Text;
using System.Text.Json;
using ActorInfer.Actors.Configuration;

namespace ActorInfer.Gateway.Tests;

/// <summary>
/// Bad input costs little: a job with more invalid lines than <c>max-invalid-job-lines</c> is refused whole, naming its
/// first bad lines, and leaves nothing behind (no journal growth, no results file, no job); invalid lines count
/// against the tenant's queue; a few invalid lines still get their error lines, which name the field.
/// </summary>
public sealed class BadJobTests
{
    private const string TenantKey = "sk-bad-jobs";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    private static async Task<StartedNode> Start(string dir)
    {
        var config = Path.Combine(dir, "node.conf");
        File.WriteAllText(config, $$"""
            actorinfer {
              model = "models/opt-tiny"
              memory.telemetry-interval = 1h
              http.tenants.t { api-key-hashes = ["{{HttpSettings.HashKey(TenantKey)}}"], max-queued-requests = 150 }
            }
            """);
        return await StartedNode.Start(config, Path.Combine(dir, "data"));
    }

    /// <summary>Bytes of the persistence folder (journal, snapshots and their write-ahead logs) and of the results folder.</summary>
    private static (long Persistence, long Results) Footprint(string data) =>
        (Directory.EnumerateFiles(Path.Combine(data, "persistence")).Sum(f => new FileInfo(f).Length),
         Directory.EnumerateFiles(Path.Combine(data, "results")).Sum(f => new FileInfo(f).Length));

    [Fact]
    public async Task A_job_past_the_invalid_line_limit_is_refused_whole_naming_its_first_bad_lines_and_nothing_is_kept()
    {
        var dir = GatewayFixture.TempDir();
        await using var node = await Start(dir);
        using var client = node.Client(TenantKey);
        var data = Path.Combine(dir, "data");
        // The journal has its tables once the job store has answered.
        Assert.Equal("list", (await GatewayFixture.ReadJson(await client.GetAsync("/v1/jobs"))).GetProperty("object").GetString());
        var before = Footprint(data);

        // 2 MB of "x" lines (a million invalid lines), and 101 invalid lines among valid ones.
        var flood = new StringBuilder().Insert(0, "x\n", 1_000_000).ToString();
        var mixed = string.Join("\n", Enumerable.Range(0, 130).Select(i => i % 6 == 0 ? """{"prompt": "ok", "max_tokens": 1}""" : """{"prompt": 5}"""));
        foreach (var (body, firstBad) in new[] { (flood, "line 1: "), (mixed, "line 2 (prompt): ") })
        {
            using var response = await client.PostAsync("/v1/jobs", new StringContent(body));
            var error = (await GatewayFixture.ReadJson(response)).GetProperty("error");
            Assert.Equal(400, (int)response.StatusCode);
            Assert.Equal("body", error.GetProperty("param").GetString());
            Assert.Equal("too_many_invalid_lines", error.GetProperty("code").GetString());
            var message = error.GetProperty("message").GetString()!;
            Assert.Contains("more than 100 invalid lines", message);
            Assert.Contains(firstBad, message);
        }

        Assert.Empty((await GatewayFixture.ReadJson(await client.GetAsync("/v1/jobs"))).GetProperty("data").EnumerateArray());
        Assert.Equal(before, Footprint(data));
        // The node serves on.
        using var ok = await client.PostAsync("/v1/completions", GatewayFixture.Json("""{"prompt": "hi", "max_tokens": 2}"""));
        Assert.Equal(200, (int)ok.StatusCode);
    }

    [Fact]
    public async Task Invalid_lines_count_against_the_tenants_queue_and_a_few_get_error_lines_naming_the_field()
    {
        var dir = GatewayFixture.TempDir();
        await using var node = await Start(dir);
        using var client = node.Client(TenantKey);

        // 100 invalid lines and 51 valid ones: 151 lines, one more than the tenant may queue.
        var tooMany = Enumerable.Repeat("""{"prompt": 5}""", 100).Concat(Enumerable.Repeat("""{"prompt": "ok", "max_tokens": 1}""", 51));
        using (var response = await client.PostAsync("/v1/jobs", new StringContent(string.Join("\n", tooMany))))
        {
            Assert.Equal(400, (int)response.StatusCode);
            var error = (await GatewayFixture.ReadJson(response)).GetProperty("error");
            Assert.Equal("body", error.GetProperty("param").GetString());
            Assert.Equal("too_many_requests_in_job", error.GetProperty("code").GetString());
        }

        // Malformed lines (a lone surrogate, a key given twice, not JSON) are the job's invalid lines, each naming its field.
        string[] lines =
        [
            """{"id": "good", "prompt": "ok", "max_tokens": 1}""",
            """{"prompt": "\ud800", "max_tokens": 1}""",
            """{"prompt": "ok", "stop": ["\udc00"]}""",
            """{"prompt": "a", "prompt": "b"}""",
            """{"prompt": "ok", "user": "\ud800"}""",
        ];
        string id;
        using (var response = await client.PostAsync("/v1/jobs", new StringContent(string.Join("\n", lines))))
        {
            var job = await GatewayFixture.ReadJson(response);
            Assert.Equal(200, (int)response.StatusCode);
            Assert.Equal((1, 4), (job.GetProperty("requests").GetInt32(), job.GetProperty("invalid").GetInt32()));
            id = job.GetProperty("id").GetString()!;
        }
        await GatewayFixture.Poll(async () => await GatewayFixture.ReadJson(await client.GetAsync($"/v1/jobs/{id}")),
            s => s.GetProperty("state").GetString() == "completed", Timeout);
        var results = (await client.GetStringAsync($"/v1/jobs/{id}/results")).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        Assert.Equal("good", results[0].GetProperty("id").GetString());
        Assert.Equal(["prompt", "stop", "prompt", "user"], results[1..].Select(r => r.GetProperty("error").GetProperty("param").GetString()));
    }
}
