using System.Text.Json;
using ActorInfer.Actors.Configuration;

namespace ActorInfer.Gateway.Tests;

/// <summary><c>GET /v1/jobs?limit=&amp;after=</c> pages as OpenAI's list endpoints do: newest first, has_more, first_id, last_id.</summary>
public sealed class JobPagingTests
{
    private const string OtherKey = "sk-paging-other";

    [Fact]
    public async Task Jobs_are_listed_newest_first_in_pages_that_follow_each_other_and_bad_paging_is_400_naming_the_parameter()
    {
        var dir = GatewayFixture.TempDir();
        var config = Path.Combine(dir, "node.conf");
        // No memory for any policy: the jobs stay queued, and nothing but the listing is at work.
        File.WriteAllText(config, $$"""
            actorinfer {
              model = "models/opt-tiny"
              memory { cpu-budget = 0, telemetry-interval = 1h }
              http.tenants.other { api-key-hashes = ["{{HttpSettings.HashKey(OtherKey)}}"] }
            }
            """);
        await using var node = await StartedNode.Start(config, Path.Combine(dir, "data"));
        using var client = node.Client();
        using var other = node.Client(OtherKey);
        var ids = new List<string>();
        for (var i = 0; i < 5; i++)
            ids.Add((await GatewayFixture.ReadJson(await client.PostAsync("/v1/jobs", new StringContent(JobTests.JobLines(1)[0])))).GetProperty("id").GetString()!);
        var foreign = (await GatewayFixture.ReadJson(await other.PostAsync("/v1/jobs", new StringContent(JobTests.JobLines(1)[0])))).GetProperty("id").GetString()!;

        var seen = new List<string>();
        var pages = new List<(int Count, bool HasMore)>();
        string? after = null;
        do
        {
            var page = await GatewayFixture.ReadJson(await client.GetAsync("/v1/jobs?limit=2" + (after is null ? "" : $"&after={after}")));
            Assert.Equal("list", page.GetProperty("object").GetString());
            var data = page.GetProperty("data").EnumerateArray().Select(j => j.GetProperty("id").GetString()!).ToList();
            Assert.Equal(data[0], page.GetProperty("first_id").GetString());
            Assert.Equal(data[^1], page.GetProperty("last_id").GetString());
            seen.AddRange(data);
            pages.Add((data.Count, page.GetProperty("has_more").GetBoolean()));
            after = page.GetProperty("has_more").GetBoolean() ? data[^1] : null;
        }
        while (after is not null);
        Assert.Equal([(2, true), (2, true), (1, false)], pages);
        Assert.Equal(Enumerable.Reverse(ids), seen);

        // Without paging parameters: the newest 20, here all five.
        var all = await GatewayFixture.ReadJson(await client.GetAsync("/v1/jobs"));
        Assert.Equal(5, all.GetProperty("data").GetArrayLength());
        Assert.False(all.GetProperty("has_more").GetBoolean());

        foreach (var (query, param) in new[] { ("limit=0", "limit"), ("limit=101", "limit"), ("limit=x", "limit"), ("limit=-1", "limit"),
                     ("after=job-nope", "after"), ($"after={foreign}", "after"), ("before=x", "before") })
        {
            using var response = await client.GetAsync("/v1/jobs?" + query);
            Assert.True(400 == (int)response.StatusCode, query);
            Assert.Equal(param, (await GatewayFixture.ReadJson(response)).GetProperty("error").GetProperty("param").GetString());
        }
    }
}
