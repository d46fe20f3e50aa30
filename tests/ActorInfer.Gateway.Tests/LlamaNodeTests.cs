using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.RegularExpressions;
using ActorInfer.TestSupport;

namespace ActorInfer.Gateway.Tests;

/// <summary>
/// `actorinfer node` (the built program, its own process) serving the Llama fixture through the OpenAI routes: the
/// completions are what Hugging Face computed, and the official `openai` npm client works against it. In the gateway
/// collection, so that its npm run never overlaps the other one in the same folder.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed partial class LlamaNodeTests : IDisposable
{
    private const string Key = "sk-llama-0123456789";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);
    private readonly string _model = Fixtures.HfLlama("llama-tiny");
    private readonly NodeProcess _process;
    private readonly HttpClient _client;

    public LlamaNodeTests()
    {
        var dir = TestPaths.TempDir();
        var config = Path.Combine(dir, "node.conf");
        File.WriteAllText(config, $$"""
            actorinfer {
              model = {{JsonSerializer.Serialize(_model)}}
              scheduler { max-gpu-batch-size = 4, max-gpu-batches = 2 }
            }
            """);
        _process = new NodeProcess("node", "--config", config, "--data-dir", Path.Combine(dir, "data"), "--port", "0", "--api-key", Key);
        var address = Listening().Match(_process.WaitForLine(Listening().IsMatch, Timeout)).Groups[1].Value;
        _client = new HttpClient { BaseAddress = new Uri(address), Timeout = Timeout };
        _client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
    }

    public void Dispose()
    {
        _client.Dispose();
        _process.Dispose();
    }

    [Fact]
    public async Task The_completions_route_gives_the_fixtures_greedy_text_and_tokens()
    {
        using (var models = await _client.GetAsync("/v1/models"))
            Assert.Equal("llama-tiny", (await GatewayFixture.ReadJson(models)).GetProperty("data")[0].GetProperty("id").GetString());
        foreach (var line in File.ReadLines(Path.Combine(_model, "expected.jsonl")))
        {
            var expected = JsonDocument.Parse(line).RootElement;
            var prompt = expected.TryGetProperty("prompt_text", out var text) ? text.GetRawText() : expected.GetProperty("prompt_ids").GetRawText();
            var count = expected.GetProperty("greedy_new_tokens").GetArrayLength();
            using var response = await _client.PostAsync("/v1/completions", GatewayFixture.Json(
                $$"""{"model": "llama-tiny", "prompt": {{prompt}}, "max_tokens": {{count}}, "temperature": 0, "ignore_eos": true}"""));
            var body = await GatewayFixture.ReadJson(response);
            Assert.True(200 == (int)response.StatusCode, body.ToString());
            Assert.Equal(expected.GetProperty("greedy_text").GetString(), body.GetProperty("choices")[0].GetProperty("text").GetString());
            Assert.Equal(count, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
            Assert.Equal(expected.GetProperty("prompt_ids").GetArrayLength(), body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        }
    }

    [NodeJsFact]
    public void The_openai_npm_client_completes_and_streams_on_a_llama()
    {
        var dir = Path.Combine(GatewayFixture.RepositoryRoot, "tests", "ActorInfer.Gateway.Tests", "npm");
        if (!File.Exists(Path.Combine(dir, "node_modules", "openai", "package.json")))
        {
            var install = OpenAiClientTests.Run(OpenAiClientTests.FindOnPath("npm")!, dir, TimeSpan.FromMinutes(3), "ci", "--no-audit", "--no-fund");
            Assert.True(install.Code == 0, "npm ci failed:\n" + install.Output);
        }
        var run = OpenAiClientTests.Run(OpenAiClientTests.FindOnPath("node")!, dir, TimeSpan.FromMinutes(1), "script.mjs", _client.BaseAddress!.ToString(), Key);
        Assert.True(run.Code == 0, "script.mjs failed:\n" + run.Output);
        var checks = run.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith('{'))
            .Select(l => JsonDocument.Parse(l).RootElement).ToDictionary(e => e.GetProperty("check").GetString()!);

        // What `generate` gives for the script's request on the same checkpoint.
        var expected = JsonDocument.Parse(GatewayFixture.Generate(_model, ["""{"prompt": "Hello, my dog is", "max_tokens": 12, "temperature": 0}"""])[0]).RootElement;
        Assert.Equal("llama-tiny", checks["models"].GetProperty("model").GetString());
        Assert.Equal(expected.GetProperty("text").GetString(), checks["completion"].GetProperty("text").GetString());
        Assert.Equal(expected.GetProperty("output_ids").GetArrayLength(), checks["completion"].GetProperty("completion_tokens").GetInt32());
        Assert.Equal(expected.GetProperty("text").GetString(), checks["stream"].GetProperty("text").GetString());
        Assert.Equal(expected.GetProperty("finish_reason").GetString(), checks["stream"].GetProperty("finish_reason").GetString());
        Assert.True(checks["stream"].GetProperty("chunks").GetInt32() > 1);
        Assert.Equal(400, checks["error"].GetProperty("status").GetInt32());
        Assert.Equal("max_tokens", checks["error"].GetProperty("param").GetString());
    }

    [GeneratedRegex(@"http: listening on (http://\S+)")]
    private static partial Regex Listening();
}
