using System.Text;
using System.Text.Json;

namespace ActorInfer.Gateway.Tests;

/// <summary>Completions against the real node: the same tokens as `actorinfer generate`, streamed or not.</summary>
[Collection(GatewayCollection.Name)]
public sealed class CompletionTests(GatewayFixture node)
{
    private const string Request = """{"model": "opt-tiny", "prompt": "Hello, my dog is", "max_tokens": 12, "temperature": 0}""";

    [Fact]
    public async Task A_greedy_completion_returns_what_generate_returns()
    {
        var expected = JsonDocument.Parse(node.Generate([Request])[0]).RootElement;
        using var client = node.Client(GatewayFixture.AliceKey);
        using var response = await client.PostAsync("/v1/completions", GatewayFixture.Json(Request));
        var body = await GatewayFixture.ReadJson(response);
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("text_completion", body.GetProperty("object").GetString());
        Assert.StartsWith("cmpl-", body.GetProperty("id").GetString());
        Assert.Equal("opt-tiny", body.GetProperty("model").GetString());
        var choice = body.GetProperty("choices")[0];
        Assert.Equal(expected.GetProperty("text").GetString(), choice.GetProperty("text").GetString());
        Assert.Equal(expected.GetProperty("finish_reason").GetString(), choice.GetProperty("finish_reason").GetString());
        Assert.Equal(JsonValueKind.Null, choice.GetProperty("logprobs").ValueKind);
        Assert.Equal(expected.GetProperty("output_ids").GetArrayLength(), body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(expected.GetProperty("prompt_ids").GetArrayLength(), body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
    }

    [Fact]
    public async Task A_streamed_completion_sends_the_same_text_in_chunks_and_ends_with_DONE()
    {
        var expected = JsonDocument.Parse(node.Generate([Request])[0]).RootElement;
        using var client = node.Client(GatewayFixture.AliceKey);
        var streamed = Request.Replace("\"temperature\": 0", "\"temperature\": 0, \"stream\": true, \"stream_options\": {\"include_usage\": true}");
        using var response = await client.PostAsync("/v1/completions", GatewayFixture.Json(streamed));
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        Assert.Equal("data: [DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement).ToList();
        var text = new StringBuilder();
        string? finish = null;
        foreach (var chunk in chunks.Where(c => c.GetProperty("choices").GetArrayLength() > 0))
        {
            var choice = chunk.GetProperty("choices")[0];
            text.Append(choice.GetProperty("text").GetString());
            if (choice.GetProperty("finish_reason").ValueKind == JsonValueKind.String) finish = choice.GetProperty("finish_reason").GetString();
        }
        Assert.True(chunks.Count > 2, "one chunk per token");
        Assert.Equal(expected.GetProperty("text").GetString(), text.ToString());
        Assert.Equal(expected.GetProperty("finish_reason").GetString(), finish);
        Assert.Equal(expected.GetProperty("output_ids").GetArrayLength(), chunks[^1].GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task A_streamed_completion_sends_each_token_as_it_is_chosen_and_the_finish_after_them()
    {
        var expected = JsonDocument.Parse(node.Generate([Request])[0]).RootElement;
        using var client = node.Client(GatewayFixture.AliceKey);
        var streamed = Request.Replace("\"temperature\": 0", "\"temperature\": 0, \"stream\": true");
        var events = await Events(client, streamed);
        var choices = events[..^1].Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement.GetProperty("choices")[0]).ToList();
        // The tokens went out as the scheduler chose them, one chunk each, before the result; the result's chunk then
        // carries only the finish reason (a stream made from the result alone puts the last token's text in it).
        var tokens = expected.GetProperty("output_ids").GetArrayLength();
        Assert.Equal(tokens + 1, choices.Count);
        Assert.All(choices[..^1], c => Assert.Equal(JsonValueKind.Null, c.GetProperty("finish_reason").ValueKind));
        Assert.Equal("", choices[^1].GetProperty("text").GetString());
        Assert.Equal(expected.GetProperty("finish_reason").GetString(), choices[^1].GetProperty("finish_reason").GetString());
        Assert.Equal(expected.GetProperty("text").GetString(), string.Concat(choices.Select(c => c.GetProperty("text").GetString())));

    }

    [Fact]
    public async Task A_streamed_completion_with_echo_and_logprobs_sends_the_prompt_then_each_token_with_its_log_probability()
    {
        using var client = node.Client(GatewayFixture.BobKey);
        const string body = """{"prompt": "Hello, my dog is", "max_tokens": 6, "temperature": 0, "logprobs": 1, "echo": true}""";
        using var plain = await client.PostAsync("/v1/completions", GatewayFixture.Json(body));
        var completion = (await GatewayFixture.ReadJson(plain)).GetProperty("choices")[0];
        var events = await Events(client, body.Replace("\"echo\": true", "\"echo\": true, \"stream\": true"));
        var choices = events[..^1].Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement.GetProperty("choices")[0]).ToList();
        // The prompt, a chunk per token as it was chosen with its log-probability, then the finish.
        Assert.Equal(1 + 6 + 1, choices.Count);
        Assert.Equal("Hello, my dog is", choices[0].GetProperty("text").GetString());
        Assert.Equal(completion.GetProperty("text").GetString(), string.Concat(choices.Select(c => c.GetProperty("text").GetString())));
        var expected = completion.GetProperty("logprobs").GetProperty("token_logprobs").EnumerateArray().TakeLast(6).Select(l => l.GetDouble());
        Assert.Equal(expected, choices[1..7].Select(c => c.GetProperty("logprobs").GetProperty("token_logprobs")[0].GetDouble()));
        Assert.Equal("", choices[^1].GetProperty("text").GetString());
        Assert.Equal(completion.GetProperty("finish_reason").GetString(), choices[^1].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task A_streamed_completion_with_stop_sequences_holds_back_what_could_begin_one()
    {
        var full = JsonDocument.Parse(node.Generate([Request])[0]).RootElement.GetProperty("text").GetString()!;
        using var client = node.Client(GatewayFixture.AliceKey);
        // A stop sequence that appears in the text (it ends there), and one that never does (its length is held back, then sent).
        foreach (var stop in new[] { full.Substring(full.Length / 2, 3), "\u0001\u0002\u0003\u0004" })
        {
            var request = Request.Replace("\"temperature\": 0", $"\"temperature\": 0, \"stop\": [{JsonSerializer.Serialize(stop)}]");
            var expected = JsonDocument.Parse(node.Generate([request])[0]).RootElement;
            var events = await Events(client, request.Replace("\"temperature\": 0", "\"temperature\": 0, \"stream\": true"));
            var choices = events[..^1].Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement.GetProperty("choices")[0]).ToList();
            Assert.Equal(expected.GetProperty("text").GetString(), string.Concat(choices.Select(c => c.GetProperty("text").GetString())));
            Assert.Equal(expected.GetProperty("finish_reason").GetString(), choices[^1].GetProperty("finish_reason").GetString());
            Assert.Equal(stop.StartsWith('\u0001') ? "length" : "stop", expected.GetProperty("finish_reason").GetString());
            // A chunk per token as it was chosen, then the finish with what was held back.
            Assert.Equal(expected.GetProperty("output_ids").GetArrayLength() + 1, choices.Count);
        }
    }

    /// <summary>A streamed completion's server-sent events, each "data: ..." (the last "data: [DONE]").</summary>
    private static async Task<string[]> Events(HttpClient client, string body)
    {
        using var response = await client.PostAsync("/v1/completions", GatewayFixture.Json(body));
        Assert.Equal(200, (int)response.StatusCode);
        return (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
    }

    [Fact]
    public async Task Token_id_prompts_and_a_one_string_array_are_accepted_and_logprobs_are_reported()
    {
        using var client = node.Client(GatewayFixture.BobKey);
        using var ids = await client.PostAsync("/v1/completions", GatewayFixture.Json("""{"prompt": [2, 100, 232], "max_tokens": 4, "temperature": 0, "logprobs": 1, "echo": true}"""));
        var body = await GatewayFixture.ReadJson(ids);
        Assert.Equal(200, (int)ids.StatusCode);
        var logprobs = body.GetProperty("choices")[0].GetProperty("logprobs");
        Assert.Equal(3 + 4, logprobs.GetProperty("tokens").GetArrayLength());
        Assert.Equal(JsonValueKind.Null, logprobs.GetProperty("token_logprobs")[0].ValueKind);
        Assert.True(logprobs.GetProperty("token_logprobs")[3].GetDouble() <= 0);

        using var array = await client.PostAsync("/v1/completions", GatewayFixture.Json("""{"prompt": ["Hello, my dog is"], "max_tokens": 12, "temperature": 0}"""));
        using var plain = await client.PostAsync("/v1/completions", GatewayFixture.Json("""{"prompt": "Hello, my dog is", "max_tokens": 12, "temperature": 0}"""));
        Assert.Equal(
            (await GatewayFixture.ReadJson(plain)).GetProperty("choices")[0].GetProperty("text").GetString(),
            (await GatewayFixture.ReadJson(array)).GetProperty("choices")[0].GetProperty("text").GetString());
    }

    [Fact]
    public async Task Models_lists_the_served_model()
    {
        using var client = node.Client(GatewayFixture.AliceKey);
        var body = await GatewayFixture.ReadJson(await client.GetAsync("/v1/models"));
        Assert.Equal("opt-tiny", body.GetProperty("data")[0].GetProperty("id").GetString());
    }
}
