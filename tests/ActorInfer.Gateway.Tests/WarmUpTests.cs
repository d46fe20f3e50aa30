using System.Text.Json;

namespace ActorInfer.Gateway.Tests;

/// <summary>
/// `actorinfer.warm-up`: a node runs its synthetic job before it serves, through its own scheduler, and it leaves no trace
/// a user sees (no job, no changed output); without it the node has run nothing when it starts serving.
/// </summary>
public sealed class WarmUpTests
{
    private const string Request = """{"prompt": [2, 100, 232, 17, 9], "max_tokens": 6, "temperature": 0, "logprobs": 1}""";

    private static async Task<(long DecodingSteps, int Jobs, string Completion)> Serve(string settings)
    {
        var dir = GatewayFixture.TempDir();
        var config = Path.Combine(dir, "node.conf");
        File.WriteAllText(config, $"actorinfer {{ model = \"models/opt-tiny\", memory.telemetry-interval = 1h, {settings} }}");
        await using var node = await StartedNode.Start(config, Path.Combine(dir, "data"));
        using var client = node.Client();
        // Read before any request: what the node ran while it started.
        var steps = (await GatewayFixture.ReadJson(await client.GetAsync("/admin/state"))).GetProperty("queue").GetProperty("decoding_steps").GetInt64();
        var jobs = (await GatewayFixture.ReadJson(await client.GetAsync("/v1/jobs"))).GetProperty("data").GetArrayLength();
        using var response = await client.PostAsync("/v1/completions", GatewayFixture.Json(Request));
        Assert.Equal(200, (int)response.StatusCode);
        var choice = (await GatewayFixture.ReadJson(response)).GetProperty("choices")[0];
        return (steps, jobs, choice.GetProperty("text").GetString() + "|" + choice.GetProperty("logprobs").GetProperty("token_logprobs").GetRawText());
    }

    [Fact]
    public async Task A_warmed_node_has_decoded_before_its_first_request_and_answers_it_as_a_cold_node_does()
    {
        var cold = await Serve("warm-up.requests = 0");
        var warm = await Serve("warm-up { requests = 3, prompt-length = 12, generation-length = 4 }");
        Assert.Equal(0, cold.DecodingSteps);
        // Three requests of 4 new tokens in one block: a prefill, then 3 decoding steps.
        Assert.Equal(3, warm.DecodingSteps);
        Assert.Equal(0, warm.Jobs);
        Assert.Equal(cold.Completion, warm.Completion);
    }

    /// <summary>
    /// A warm-up the budgets leave no room for fails once the scheduler's wait for memory ends, and the node starts all the
    /// same: unwarmed, nothing decoded.
    /// </summary>
    [Fact]
    public async Task A_warm_up_that_cannot_run_fails_after_the_wait_for_memory_and_the_node_starts_unwarmed()
    {
        var dir = GatewayFixture.TempDir();
        var config = Path.Combine(dir, "node.conf");
        File.WriteAllText(config, """
            actorinfer {
              model = "models/opt-tiny"
              memory { telemetry-interval = 1h, cpu-budget = "64KiB" }
              scheduler.max-wait-for-memory = 1s
              warm-up { requests = 2, prompt-length = 12, generation-length = 4 }
            }
            """);
        var started = System.Diagnostics.Stopwatch.StartNew();
        await using var node = await StartedNode.Start(config, Path.Combine(dir, "data"));
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(60), $"the node took {started.Elapsed} to start");
        using var client = node.Client();
        var state = await GatewayFixture.ReadJson(await client.GetAsync("/admin/state"));
        Assert.Equal(0, state.GetProperty("queue").GetProperty("decoding_steps").GetInt64());
        Assert.Equal(0, state.GetProperty("queue").GetProperty("scheduler").GetInt32());
    }
}
