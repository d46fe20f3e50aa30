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
                     "actorinfer_recomputed_tokens_total", "actorinfer_device_out_of_memory_total",
                     "actorinfer_pressure_honour_seconds", "actorinfer_pressure_events_total", "actorinfer_requests_admitted_total",
                     "actorinfer_open_file_handles", "actorinfer_file_handle_limit", "actorinfer_connections_rejected_total",
                     "actorinfer_gc_heap_bytes", "actorinfer_gc_committed_bytes",
                 })
            Assert.Contains($"# TYPE {name} ", text);
        Assert.True(Value(text, "actorinfer_gc_heap_bytes") > 0);
        Assert.True(Value(text, "actorinfer_batch_drops_total") >= 0);
        Assert.True(Value(text, "actorinfer_requeues_total") >= 0);
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

    [Fact]
    public async Task The_admin_state_names_the_compute_tier_and_the_budget_of_its_largest_block()
    {
        using var admin = node.Client(GatewayFixture.AdminKey);
        var compute = (await GatewayFixture.ReadJson(await admin.GetAsync("/admin/state"))).GetProperty("compute");
        Assert.Equal("cpu", compute.GetProperty("tier").GetString());
        // The fixture's node runs without batch-invariant products (the default).
        Assert.False((await GatewayFixture.ReadJson(await admin.GetAsync("/admin/state"))).GetProperty("batch_invariant").GetBoolean());
        // The fixture's node runs blocks of up to 2 GPU batches of 8 sequences, in float32: the runtime's placement
        // of that block, every weight and cache on the compute tier, sequences at the full context.
        var planner = node.Node.PolicyPlanner!;
        var largest = compute.GetProperty("largest_block_bytes").GetInt64();
        Assert.Equal(planner.BytesFor(8, 2), largest);
        Assert.True(largest > planner.BytesFor(8, 1) && planner.BytesFor(8, 1) > planner.BytesFor(1, 1));
        Assert.Equal(16, planner.Plan(new ActorInfer.Actors.Memory.TierBudgets(0, largest, 0))!.BlockSize);
        Assert.True(planner.Plan(new ActorInfer.Actors.Memory.TierBudgets(0, largest - 1, 0))!.BlockSize < 16);
    }

    /// <summary>
    /// Pressure while a block runs: the CPU budget (the compute tier of this CPU node) first holds every request
    /// back, then admits a block of 8, then shrinks to one sequence at once. The planner's smaller policy reaches
    /// the running block, which drops GPU batches: the drop and requeue counters move, and every request of the
    /// job still completes. A block of this tiny model can finish before the second budget change lands, so the
    /// sequence is tried at most five times.
    /// </summary>
    [Fact]
    public async Task Drops_and_requeues_move_when_pressure_shrinks_a_running_block()
    {
        using var admin = node.Client(GatewayFixture.AdminKey);
        using var alice = node.Client(GatewayFixture.AliceKey);
        var planner = node.Node.PolicyPlanner!;
        async Task SetCpu(string budget) =>
            Assert.Equal(200, (int)(await admin.PostAsync("/admin/pressure", GatewayFixture.Json($$"""{"tier": "cpu", "budget": {{budget}}}"""))).StatusCode);

        var before = Value(await Scrape(), "actorinfer_batch_drops_total");
        try
        {
            for (var attempt = 0; attempt < 5 && Value(await Scrape(), "actorinfer_batch_drops_total") <= before; attempt++)
            {
                await SetCpu("0");
                var lines = string.Join("\n", Enumerable.Range(0, 8).Select(i => $$"""{"prompt": [2, {{10 + i}}, {{20 + i}}], "max_tokens": 55, "temperature": 0, "ignore_eos": true}"""));
                var job = await GatewayFixture.ReadJson(await alice.PostAsync("/v1/jobs", new StringContent(lines)));
                var id = job.GetProperty("id").GetString();
                // The requests' bucket (3 prompt tokens, 55 to generate): what the planner reserves for them.
                var bucket = planner.Buckets.For(3, 55);
                await SetCpu($"{planner.BytesFor(8, 1, bucket) + 1024}");
                await SetCpu($"{planner.BytesFor(1, 1, bucket) + 1024}");
                await GatewayFixture.Poll(async () => (await GatewayFixture.ReadJson(await alice.GetAsync($"/v1/jobs/{id}"))).GetProperty("state").GetString(),
                    state => state == "completed", Timeout);
            }
            var text = await Scrape();
            Assert.True(Value(text, "actorinfer_batch_drops_total") > before, "no GPU batch was dropped in five tries");
            Assert.True(Value(text, "actorinfer_requeues_total") > 0);
            Assert.True(Value(text, "actorinfer_recomputed_tokens_total") > 0);
            Assert.True(Value(text, "actorinfer_pressure_honour_seconds_count") > 0, "the time to honour the smaller budget was not recorded");
        }
        finally
        {
            await admin.PostAsync("/admin/pressure", GatewayFixture.Json("""{"tier": "cpu", "budget": "clear"}"""));
        }
    }

    [Fact]
    public async Task The_pressure_command_reaches_the_node_through_its_url()
    {
        var root = new System.CommandLine.RootCommand("test");
        foreach (var c in ActorInfer.Cli.Commands.CommandCatalog.All()) root.Subcommands.Add(c);
        const string series = "actorinfer_memory_budget_bytes{tier=\"disk\"}";
        try
        {
            var error = new StringWriter();
            var code = ActorInfer.Cli.CliRunner.Run(root,
                ["pressure", "--node", node.BaseAddress.ToString(), "--api-key", GatewayFixture.AdminKey, "--tier", "disk", "--budget", "77MiB"], error);
            Assert.True(code == 0, error.ToString());
            await GatewayFixture.Poll(async () => Value(await Scrape(), series), v => v == 77 * 1024 * 1024, Timeout);

            code = ActorInfer.Cli.CliRunner.Run(root,
                ["pressure", "--node", node.BaseAddress.ToString(), "--api-key", "sk-wrong", "--tier", "disk", "--budget", "1GiB"], error);
            Assert.NotEqual(0, code);
            Assert.Contains("401", error.ToString());
        }
        finally
        {
            using var admin = node.Client(GatewayFixture.AdminKey);
            await admin.PostAsync("/admin/pressure", GatewayFixture.Json("""{"tier": "disk", "budget": "clear"}"""));
        }
    }
}

public sealed class ConnectionLimitTests
{
    [Fact]
    public void Connections_never_take_the_handles_the_node_keeps_for_its_own_files()
    {
        var limits = ConnectionLimits.Apply(new ActorInfer.Actors.Configuration.ConnectionSettings(int.MaxValue, TimeSpan.FromSeconds(30),
            TimeSpan.FromSeconds(10), 1024));
        var handles = Assert.NotNull(limits.HandleLimit);
        Assert.Equal(Math.Max(ConnectionLimits.Fewest, handles - FileHandles.Reserve), limits.MaxConnections);
        Assert.InRange(FileHandles.Open() ?? -1, 1, handles);
        // Below the handle limit, the configured maximum holds.
        Assert.Equal(100, ConnectionLimits.Apply(new ActorInfer.Actors.Configuration.ConnectionSettings(100, TimeSpan.FromSeconds(30),
            TimeSpan.FromSeconds(10), 1024)).MaxConnections);
    }

    [Theory]
    [InlineData(100, 1000, 50)] // at most half the connections: authenticated ones always have room beside a flood
    [InlineData(100, 10, 10)]
    [InlineData(int.MaxValue, 1000, 1000)]
    public void Unauthenticated_connections_get_at_most_half_of_the_connection_limit(int max, int maxUnauthenticated, int expected)
    {
        var limits = ConnectionLimits.Apply(new ActorInfer.Actors.Configuration.ConnectionSettings(max, TimeSpan.FromSeconds(30),
            TimeSpan.FromSeconds(10), 1024, maxUnauthenticated));
        Assert.Equal(expected, limits.MaxUnauthenticated);
    }
}
