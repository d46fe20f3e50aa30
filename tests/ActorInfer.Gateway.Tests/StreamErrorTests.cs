namespace ActorInfer.Gateway.Tests;

/// <summary>
/// A streamed completion that cannot be answered before anything went out gets the error as its status, as a completion
/// that is not streamed does (after the first event it would travel as an event, the 200 being sent).
/// </summary>
public sealed class StreamErrorTests
{
    [Fact]
    public async Task A_streamed_completion_past_the_completion_timeout_before_any_token_is_a_504_naming_it()
    {
        var dir = GatewayFixture.TempDir();
        var config = Path.Combine(dir, "node.conf");
        // No CPU memory for any policy: the request is accepted and persisted but never runs.
        File.WriteAllText(config, """
            actorinfer {
              model = "models/opt-tiny"
              memory.cpu-budget = 0
              http.enabled = on
              http.completion-timeout = 2s
            }
            """);
        await using var node = await StartedNode.Start(config, Path.Combine(dir, "data"));
        using var client = node.Client();
        using var response = await client.PostAsync("/v1/completions", GatewayFixture.Json(
            """{"model": "opt-tiny", "prompt": "Hello", "max_tokens": 4, "temperature": 0, "stream": true}"""));
        Assert.Equal(504, (int)response.StatusCode);
        var error = (await GatewayFixture.ReadJson(response)).GetProperty("error");
        Assert.Equal("completion_timeout", error.GetProperty("code").GetString());
        Assert.Contains("still runs", error.GetProperty("message").GetString());
    }
}
