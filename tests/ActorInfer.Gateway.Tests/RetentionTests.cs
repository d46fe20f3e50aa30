using System.Text.Json;

namespace ActorInfer.Gateway.Tests;

/// <summary>
/// <c>actorinfer.jobs.retention</c> through HTTP: a finished completion past its retention is 404 in OpenAI's error
/// shape (status and results), its results file is gone, and its idempotency key is forgotten with it.
/// </summary>
public sealed class RetentionTests
{
    [Fact]
    public async Task An_expired_completion_is_404_its_results_file_is_deleted_and_its_key_is_new_work_again()
    {
        var dir = GatewayFixture.TempDir();
        var config = Path.Combine(dir, "node.conf");
        File.WriteAllText(config, """
            actorinfer {
              model = "models/opt-tiny"
              jobs.retention = 2s
            }
            """);
        var data = Path.Combine(dir, "data");
        await using var node = await StartedNode.Start(config, data);
        using var client = node.Client();
        const string body = """{"prompt": "Hello, my dog is", "max_tokens": 4, "temperature": 0}""";

        async Task<JsonElement> Complete()
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = GatewayFixture.Json(body) };
            request.Headers.Add("Idempotency-Key", "kept-for-a-while");
            using var response = await client.SendAsync(request);
            var json = await GatewayFixture.ReadJson(response);
            Assert.True(response.IsSuccessStatusCode, json.ToString());
            return json;
        }

        var first = await Complete();
        var id = first.GetProperty("id").GetString()!;
        var results = Path.Combine(data, "results", id + ".jsonl");

        // Polled with a generous limit: the expiry sweep runs every 200 ms for a retention of 2 s.
        var status = await GatewayFixture.Poll(async () =>
        {
            using var response = await client.GetAsync($"/v1/jobs/{id}");
            return ((int)response.StatusCode, await GatewayFixture.ReadJson(response));
        }, r => r.Item1 == 404, TimeSpan.FromSeconds(120));
        var error = status.Item2.GetProperty("error");
        Assert.Equal(("invalid_request_error", "id", "job_not_found"),
            (error.GetProperty("type").GetString(), error.GetProperty("param").GetString(), error.GetProperty("code").GetString()));
        Assert.Contains(id, error.GetProperty("message").GetString());
        using (var response = await client.GetAsync($"/v1/jobs/{id}/results"))
        {
            Assert.Equal(404, (int)response.StatusCode);
            Assert.Equal("job_not_found", (await GatewayFixture.ReadJson(response)).GetProperty("error").GetProperty("code").GetString());
        }
        Assert.False(File.Exists(results));
        using (var response = await client.GetAsync("/v1/jobs"))
            Assert.Empty((await GatewayFixture.ReadJson(response)).GetProperty("data").EnumerateArray());

        // The key went with the job: a retry is run again (same id, as the key derives it; greedy, so the same text).
        var again = await Complete();
        Assert.Equal(id, again.GetProperty("id").GetString());
        Assert.Equal(first.GetProperty("choices")[0].GetProperty("text").GetString(), again.GetProperty("choices")[0].GetProperty("text").GetString());
    }
}
