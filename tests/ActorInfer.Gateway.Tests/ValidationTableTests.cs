using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace ActorInfer.Gateway.Tests;

/// <summary>
/// Bad requests, each with its documented status and an error in OpenAI's shape naming the field (param null only
/// where no field is to blame: the body is not JSON, the key is wrong, the route is unknown). None is a 5xx, and
/// the node serves afterwards.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class ValidationTableTests(GatewayFixture node)
{
    private const string Ok = "\"prompt\": \"hi\", \"max_tokens\": 2";

    public static TheoryData<string, string, string, string, string?, int, string?> Cases()
    {
        var d = new TheoryData<string, string, string, string, string?, int, string?>();
        void C(string name, string method, string path, string key, string? body, int status, string? param) =>
            d.Add(name, method, path, key, body, status, param);
        const string c = "/v1/completions";
        // Keys
        C("no key", "POST", c, "none", $"{{{Ok}}}", 401, null);
        C("unknown key", "POST", c, "bad", $"{{{Ok}}}", 401, null);
        C("basic scheme", "POST", c, "basic", $"{{{Ok}}}", 401, null);
        C("admin key on a tenant route", "POST", c, "admin", $"{{{Ok}}}", 403, null);
        C("tenant key on admin state", "GET", "/admin/state", "alice", null, 403, null);
        C("tenant key on admin pressure", "POST", "/admin/pressure", "alice", """{"tier": "cpu", "budget": 0}""", 403, null);
        C("no key on metrics", "GET", "/metrics", "none", null, 401, null);
        C("no key on an unknown route", "GET", "/v1/nothing", "none", null, 401, null);
        C("unknown route", "GET", "/v1/nothing", "alice", null, 404, null);
        C("wrong method", "PUT", c, "alice", $"{{{Ok}}}", 405, null);
        C("wrong method without a key", "PUT", c, "none", $"{{{Ok}}}", 401, null);
        // The body
        C("not JSON", "POST", c, "alice", "{\"prompt\": ", 400, null);
        C("a JSON array", "POST", c, "alice", "[1, 2]", 400, null);
        C("empty body", "POST", c, "alice", "", 400, null);
        C("JSON null", "POST", c, "alice", "null", 400, null);
        C("oversized body", "POST", c, "alice", "<oversized>", 413, "body");
        // Fields
        C("prompt missing", "POST", c, "alice", """{"max_tokens": 2}""", 400, "prompt");
        C("prompt a number", "POST", c, "alice", """{"prompt": 5}""", 400, "prompt");
        C("prompt empty", "POST", c, "alice", """{"prompt": ""}""", 400, "prompt");
        C("prompt empty array", "POST", c, "alice", """{"prompt": []}""", 400, "prompt");
        C("prompt batch", "POST", c, "alice", """{"prompt": ["a", "b"]}""", 400, "prompt");
        C("prompt nested ids", "POST", c, "alice", """{"prompt": [[1, 2]]}""", 400, "prompt");
        C("prompt negative id", "POST", c, "alice", """{"prompt": [-1]}""", 400, "prompt");
        C("prompt id outside the vocabulary", "POST", c, "alice", """{"prompt": [5000]}""", 400, "prompt");
        C("prompt fractional id", "POST", c, "alice", """{"prompt": [1.5]}""", 400, "prompt");
        C("max_tokens a string", "POST", c, "alice", """{"prompt": "hi", "max_tokens": "10"}""", 400, "max_tokens");
        C("max_tokens zero", "POST", c, "alice", """{"prompt": "hi", "max_tokens": 0}""", 400, "max_tokens");
        C("max_tokens negative", "POST", c, "alice", """{"prompt": "hi", "max_tokens": -5}""", 400, "max_tokens");
        C("max_tokens fractional", "POST", c, "alice", """{"prompt": "hi", "max_tokens": 1.5}""", 400, "max_tokens");
        C("max_tokens past the context", "POST", c, "alice", """{"prompt": "hi", "max_tokens": 100000}""", 400, "max_tokens");
        C("temperature a string", "POST", c, "alice", """{"prompt": "hi", "temperature": "hot"}""", 400, "temperature");
        C("temperature above 2", "POST", c, "alice", """{"prompt": "hi", "temperature": 3}""", 400, "temperature");
        C("temperature negative", "POST", c, "alice", """{"prompt": "hi", "temperature": -0.1}""", 400, "temperature");
        C("top_p zero", "POST", c, "alice", """{"prompt": "hi", "top_p": 0}""", 400, "top_p");
        C("top_p above 1", "POST", c, "alice", """{"prompt": "hi", "top_p": 1.5}""", 400, "top_p");
        C("top_k negative", "POST", c, "alice", """{"prompt": "hi", "top_k": -1}""", 400, "top_k");
        C("seed a string", "POST", c, "alice", """{"prompt": "hi", "seed": "x"}""", 400, "seed");
        C("seed fractional", "POST", c, "alice", """{"prompt": "hi", "seed": 1.5}""", 400, "seed");
        C("stop a number", "POST", c, "alice", """{"prompt": "hi", "stop": 5}""", 400, "stop");
        C("stop too many", "POST", c, "alice", """{"prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}""", 400, "stop");
        C("stop empty", "POST", c, "alice", """{"prompt": "hi", "stop": [""]}""", 400, "stop");
        C("stop holding a number", "POST", c, "alice", """{"prompt": "hi", "stop": [1]}""", 400, "stop");
        C("echo a string", "POST", c, "alice", """{"prompt": "hi", "echo": "yes"}""", 400, "echo");
        C("logprobs above 5", "POST", c, "alice", """{"prompt": "hi", "logprobs": 6}""", 400, "logprobs");
        C("logprobs negative", "POST", c, "alice", """{"prompt": "hi", "logprobs": -1}""", 400, "logprobs");
        C("n above 1", "POST", c, "alice", """{"prompt": "hi", "n": 2}""", 400, "n");
        C("n a string", "POST", c, "alice", """{"prompt": "hi", "n": "1"}""", 400, "n");
        C("stream a string", "POST", c, "alice", """{"prompt": "hi", "stream": "true"}""", 400, "stream");
        C("user a number", "POST", c, "alice", """{"prompt": "hi", "user": 5}""", 400, "user");
        C("unknown field", "POST", c, "alice", """{"prompt": "hi", "foo": 1}""", 400, "foo");
        C("id is the server's", "POST", c, "alice", """{"prompt": "hi", "id": "mine"}""", 400, "id");
        C("model a number", "POST", c, "alice", """{"prompt": "hi", "model": 5}""", 400, "model");
        C("model not served", "POST", c, "alice", """{"prompt": "hi", "model": "gpt-4"}""", 404, "model");
        C("stream_options without stream", "POST", c, "alice", """{"prompt": "hi", "stream_options": {"include_usage": true}}""", 400, "stream_options");
        C("stream_options unknown field", "POST", c, "alice", """{"prompt": "hi", "stream": true, "stream_options": {"x": 1}}""", 400, "stream_options");
        C("ignore_eos a string", "POST", c, "alice", """{"prompt": "hi", "ignore_eos": "no"}""", 400, "ignore_eos");
        // Malformed bodies: lone UTF-16 surrogates (valid JSON escapes that no string can hold), keys given twice,
        // bytes that are not UTF-8.
        C("prompt a lone high surrogate", "POST", c, "alice", """{"prompt": "\ud800", "max_tokens": 2}""", 400, "prompt");
        C("prompt with a lone low surrogate", "POST", c, "alice", """{"prompt": "a\udc00b", "max_tokens": 2}""", 400, "prompt");
        C("prompt array of a lone surrogate", "POST", c, "alice", """{"prompt": ["\ud800"], "max_tokens": 2}""", 400, "prompt");
        C("stop a lone surrogate", "POST", c, "alice", """{"prompt": "hi", "stop": "\ud800"}""", 400, "stop");
        C("stop holding a lone surrogate", "POST", c, "alice", """{"prompt": "hi", "stop": ["ok", "\udbff"]}""", 400, "stop");
        C("user a lone surrogate", "POST", c, "alice", """{"prompt": "hi", "user": "\ud800"}""", 400, "user");
        C("model a lone surrogate", "POST", c, "alice", """{"prompt": "hi", "model": "\ud800"}""", 400, "model");
        C("prompt given twice", "POST", c, "alice", """{"prompt": "a", "prompt": "b", "max_tokens": 2}""", 400, "prompt");
        C("max_tokens given twice", "POST", c, "alice", """{"prompt": "hi", "max_tokens": 2, "max_tokens": 3}""", 400, "max_tokens");
        C("include_usage given twice", "POST", c, "alice",
            """{"prompt": "hi", "stream": true, "stream_options": {"include_usage": true, "include_usage": false}}""", 400, "stream_options");
        C("completion not UTF-8", "POST", c, "alice", "<invalid-utf8-prompt>", 400, "body");
        // Jobs
        C("job priority not a number", "POST", "/v1/jobs?priority=high", "alice", $"{{{Ok}}}", 400, "priority");
        C("job unknown query parameter", "POST", "/v1/jobs?colour=red", "alice", $"{{{Ok}}}", 400, "colour");
        C("job larger than the tenant's queue", "POST", "/v1/jobs", "carol", string.Join("\n", Enumerable.Repeat($"{{{Ok}}}", 3)), 400, "body");
        C("job without requests", "POST", "/v1/jobs", "alice", "\n\n", 400, "body");
        C("job not UTF-8", "POST", "/v1/jobs", "alice", "<invalid-utf8>", 400, "body");
        C("unknown job", "GET", "/v1/jobs/job-nope", "alice", null, 404, "id");
        C("another tenant's job", "GET", "/v1/jobs/{bob}", "alice", null, 404, "id");
        C("another tenant's results", "GET", "/v1/jobs/{bob}/results", "alice", null, 404, "id");
        C("cancel another tenant's job", "DELETE", "/v1/jobs/{bob}", "alice", null, 404, "id");
        // Admin
        C("pressure unknown tier", "POST", "/admin/pressure", "admin", """{"tier": "tpu", "budget": 0}""", 400, "tier");
        C("pressure without tier", "POST", "/admin/pressure", "admin", """{"budget": 0}""", 400, "tier");
        C("pressure budget not a size", "POST", "/admin/pressure", "admin", """{"tier": "cpu", "budget": "lots"}""", 400, "budget");
        C("pressure budget negative", "POST", "/admin/pressure", "admin", """{"tier": "cpu", "budget": -1}""", 400, "budget");
        C("pressure without budget", "POST", "/admin/pressure", "admin", """{"tier": "cpu"}""", 400, "budget");
        C("pressure unknown field", "POST", "/admin/pressure", "admin", """{"tier": "cpu", "budget": 0, "why": "x"}""", 400, "why");
        C("pressure not JSON", "POST", "/admin/pressure", "admin", "tier=cpu", 400, null);
        C("pressure budget a lone surrogate", "POST", "/admin/pressure", "admin", """{"tier": "cpu", "budget": "\ud800"}""", 400, "budget");
        C("pressure tier a lone surrogate", "POST", "/admin/pressure", "admin", """{"tier": "\udfff", "budget": 0}""", 400, "tier");
        C("pressure tier given twice", "POST", "/admin/pressure", "admin", """{"tier": "cpu", "tier": "gpu", "budget": 0}""", 400, "tier");
        C("pressure budget given twice", "POST", "/admin/pressure", "admin", """{"tier": "cpu", "budget": 0, "budget": "clear"}""", 400, "budget");
        C("pressure not UTF-8", "POST", "/admin/pressure", "admin", "<invalid-utf8-prompt>", 400, "body");
        C("tenant key on metrics", "GET", "/metrics", "alice", null, 403, null);
        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task A_bad_request_gets_its_status_and_names_its_field(string name, string method, string path, string key, string? body,
        int status, string? param)
    {
        using var client = node.Client(null);
        var bobJob = await node.BobJob();
        using var request = new HttpRequestMessage(new HttpMethod(method), path.Replace("{bob}", bobJob));
        request.Headers.Authorization = key switch
        {
            "none" => null,
            "bad" => new AuthenticationHeaderValue("Bearer", "sk-not-a-key"),
            "basic" => new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes("alice:" + GatewayFixture.AliceKey))),
            "alice" => new AuthenticationHeaderValue("Bearer", GatewayFixture.AliceKey),
            "carol" => new AuthenticationHeaderValue("Bearer", GatewayFixture.CarolKey),
            "admin" => new AuthenticationHeaderValue("Bearer", GatewayFixture.AdminKey),
            _ => throw new ArgumentException(key),
        };
        request.Content = body switch
        {
            null => null,
            "<oversized>" => GatewayFixture.Json($"{{\"prompt\": \"{new string('a', 70_000)}\"}}"),
            "<invalid-utf8>" => new ByteArrayContent([0x7b, 0xff, 0xfe, 0x7d]),
            // {"prompt": "<C3 28>"}: a two-byte sequence whose second byte is not a continuation byte.
            "<invalid-utf8-prompt>" => new ByteArrayContent([.. "{\"prompt\": \""u8, 0xc3, 0x28, .. "\"}"u8]),
            _ => GatewayFixture.Json(body),
        };
        using var response = await client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True((int)response.StatusCode < 500, $"{name}: {(int)response.StatusCode} {text}");
        Assert.True(status == (int)response.StatusCode, $"{name}: expected {status}, got {(int)response.StatusCode}: {text}");
        var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()), name);
        Assert.Equal(JsonValueKind.String, error.GetProperty("type").ValueKind);
        Assert.True(error.TryGetProperty("code", out _), name);
        // RFC 6750: a 401 names the scheme to authenticate with.
        if (status == 401) Assert.Equal("Bearer", response.Headers.WwwAuthenticate.ToString());
        if (param is null) Assert.Equal(JsonValueKind.Null, error.GetProperty("param").ValueKind);
        else Assert.Equal(param, error.GetProperty("param").GetString());
    }

    [Fact]
    public async Task The_node_serves_after_the_bad_requests()
    {
        using var client = node.Client(GatewayFixture.AliceKey);
        foreach (var body in new[] { "{", "[]", """{"prompt": 5}""", """{"prompt": "hi", "max_tokens": 100000}""" })
            Assert.Equal(400, (int)(await client.PostAsync("/v1/completions", GatewayFixture.Json(body))).StatusCode);
        using var response = await client.PostAsync("/v1/completions", GatewayFixture.Json($"{{{Ok}}}"));
        Assert.Equal(200, (int)response.StatusCode);
        using var ready = await node.Client(null).GetAsync("/readyz");
        Assert.Equal(200, (int)ready.StatusCode);
    }
}
