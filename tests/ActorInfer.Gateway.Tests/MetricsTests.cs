using System.Globalization;
using System.Text.RegularExpressions;

namespace ActorInfer.Gateway.Tests;

/// <summary>/metrics: the series exist, tokens move with work, and /admin/pressure moves the budget gauge.</summary>
[Collection(GatewayCollection.Name)]
public sealed class MetricsTests(GatewayFixture node)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private async Task<string> Scrape()
    {
        using var client = node.Client(GatewayFixture.AdminKey);
        using var response = await client.GetAsync("/metrics");
        Assert.Equal(200, (int)response.StatusCode);
        return await response.Content.ReadAsStringAsync();
    }

    private static double Value(string text, string series)
    {
        var m = Regex.Match(text, "^" + Regex.Escape(series) + @" (\S+)$", RegexOptions.Multiline);
        return m.Success ? double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : double.NaN;
    }

    [Fact]
    public async Task The_series_are_exported()
    {
        var text = await Scrape();
        foreach (var name in new[]
                 {
                     "actorinfer_http_requests_total", "actorinfer_tokens_generated_total", "actorinfer_queue_depth",
                     "actorinfer_time_to_first_token_seconds", "actorinfer_per_token_latency_seconds", "actorinfer_memory_budget_bytes",
                     "actorinfer_batch_drops_total", "actorinfer_requeues_total", "actorinfer_policy_changes_total",
                     "actorinfer_pressure_honour_seconds", "actorinfer_pressure_events_total", "actorinfer_requests_admitted_total",
                 })
            Assert.Contains($"# TYPE {name} ", text);
        Assert.Equal(0, Value(text, "actorinfer_batch_drops_total"));
        Assert.Equal(0, Value(text, "actorinfer_requeues_total"));
    }

    [Fact]
    public async Task Tokens_move_when_work_happens()
    {
        var before = Value(await Scrape(), "actorinfer_tokens_generated_total");
        using var client = node.Client(GatewayFixture.AliceKey);
        using var response = await client.PostAsync("/v1/completions", GatewayFixture.Json("""{"prompt": "count me", "max_tokens": 5, "ignore_eos": true}"""));
        Assert.Equal(200, (int)response.StatusCode);
        var after = await GatewayFixture.Poll(async () => Value(await Scrape(), "actorinfer_tokens_generated_total"), v => v >= before + 5, Timeout);
        Assert.True(after >= before + 5);
        var text = await Scrape();
        Assert.True(Value(text, "actorinfer_time_to_first_token_seconds_count") >= 1);
        Assert.Matches("actorinfer_http_requests_total\\{route=\"/v1/completions\",status=\"200\"\\} [1-9]", text);
    }

    [Fact]
    public async Task A_pressure_event_moves_the_budget_gauge()
    {
        using var admin = node.Client(GatewayFixture.AdminKey);
        const string series = "actorinfer_memory_budget_bytes{tier=\"disk\"}";
        var target = 123_456_789L;
        try
        {
            using var response = await admin.PostAsync("/admin/pressure", GatewayFixture.Json($$"""{"tier": "disk", "budget": {{target}}}"""));
            Assert.Equal(200, (int)response.StatusCode);
            await GatewayFixture.Poll(async () => Value(await Scrape(), series), v => v == target, Timeout);
            var state = await GatewayFixture.ReadJson(await admin.GetAsync("/admin/state"));
            Assert.Equal(target, state.GetProperty("budgets").GetProperty("disk").GetInt64());
        }
        finally
        {
            await admin.PostAsync("/admin/pressure", GatewayFixture.Json("""{"tier": "disk", "budget": "clear"}"""));
        }
        await GatewayFixture.Poll(async () => Value(await Scrape(), series), v => v != target, Timeout);
    }
}
