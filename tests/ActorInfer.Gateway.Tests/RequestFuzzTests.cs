using System.Text;
using System.Text.Json;
using ActorInfer.Model.Generation;
using FsCheck;
using FsCheck.Fluent;
using Microsoft.AspNetCore.Http;

namespace ActorInfer.Gateway.Tests;

/// <summary>
/// Generated bodies (FsCheck, a fixed seed, so every run sees the same ones) through every request parser: the
/// completion body, the admin pressure body and a job's JSONL body, driven in-process; none may end in anything but
/// a result or an error below 500. A sample of the refused ones goes through the real routes too, which must answer
/// the same status.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class RequestFuzzTests(GatewayFixture node)
{
    private const int Bodies = 10_000;
    private const int ThroughHttp = 150;

    private static readonly string[] Fields =
    [
        "prompt", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "echo", "logprobs", "n", "stream", "user",
        "ignore_eos", "stream_options", "include_usage", "model", "id", "tier", "budget", "\\ud800", "", "pr\\u006fmpt",
    ];

    private static readonly string[] Strings =
    [
        "\"hi\"", "\"\"", "\"\\ud800\"", "\"a\\udc00\"", "\"\\ud83d\\ude00\"", "\"\\u0000\"", "\"clear\"", "\"cpu\"", "\"gpu\"", "\"disk\"",
        "\"8GiB\"", "\"1e99GiB\"", "\"-1\"", "\"opt-tiny\"", "\"\\\"\"", "\"é漢字\"", "\"\\\\\"", "\"99999999999999999999999GB\"", "\"\\n\"",
    ];

    private static readonly string[] Numbers =
    [
        "0", "1", "-1", "2", "1.5", "-0.0", "1e400", "-1e400", "9223372036854775808", "2147483648", "4", "999", "1e-400", "0.5", "100000",
    ];

    private static readonly string[] ValidBodies =
    [
        """{"prompt": "Hello", "max_tokens": 2, "temperature": 0}""",
        """{"prompt": [2, 31414], "max_tokens": 3, "stop": ["a", "b"], "seed": 5}""",
        """{"model": "opt-tiny", "prompt": ["hi"], "stream": true, "stream_options": {"include_usage": true}}""",
        """{"tier": "cpu", "budget": "8GiB"}""",
        """{"tier": "gpu", "budget": 1024}""",
    ];

    private static Gen<string> Value(int depth)
    {
        var scalar = Gen.OneOf(Gen.Elements(Strings), Gen.Elements(Numbers), Gen.Elements("true", "false", "null"));
        if (depth == 0) return scalar;
        var array = Gen.ListOf(Value(depth - 1)).Select(items => "[" + string.Join(", ", items.Take(5)) + "]");
        return Gen.Frequency((6, scalar), (2, array), (2, Object(depth - 1)));
    }

    private static Gen<string> Object(int depth) =>
        Gen.ListOf(Gen.Zip(Gen.Elements(Fields), Value(depth))).Select(members =>
            "{" + string.Join(", ", members.Take(6).Select(m => $"\"{m.Item1}\": {m.Item2}")) + "}");

    /// <summary>Objects of known and odd fields, valid bodies with a few bytes changed, deep nesting, and raw bytes.</summary>
    private static Gen<byte[]> Body()
    {
        var structured = Object(3).Select(Encoding.UTF8.GetBytes);
        var edit = Gen.Zip(Gen.Zip(Gen.Choose(0, 2), Gen.Choose(0, 1000)), Gen.Choose(0, 255), (kindAt, value) => (kindAt.Item1, kindAt.Item2, value));
        var mutated = Gen.Elements(ValidBodies).SelectMany(body => Gen.ListOf(edit).Select(edits => Mutate(Encoding.UTF8.GetBytes(body), edits.Take(4))));
        var nested = Gen.Choose(1, 80).Select(depth => Encoding.UTF8.GetBytes($"{{\"prompt\": {new string('[', depth)}1{new string(']', depth)}}}"));
        var raw = Gen.ArrayOf(Gen.Choose(0, 255).Select(b => (byte)b));
        return Gen.Frequency((5, structured), (4, mutated), (1, nested), (1, raw));
    }

    /// <summary>Each edit replaces (0), deletes (1) or inserts (2) one byte at a position.</summary>
    private static byte[] Mutate(byte[] body, IEnumerable<(int Kind, int At, int Byte)> edits)
    {
        var bytes = body.ToList();
        foreach (var (kind, at, value) in edits)
        {
            var i = bytes.Count == 0 ? 0 : at % bytes.Count;
            if (kind == 0 && bytes.Count > 0) bytes[i] = (byte)value;
            else if (kind == 1 && bytes.Count > 0) bytes.RemoveAt(i);
            else bytes.Insert(i, (byte)value);
        }
        return [.. bytes];
    }

    /// <summary>What the completion route answers for a body, short of running it: 0 when it would be accepted.</summary>
    private int Completion(byte[] body)
    {
        try
        {
            var input = CompletionInput.Parse(body, node.Node.Settings.Http.ServedModelName);
            node.Node.Factory.Create(input.Request, 0);
            return 0;
        }
        catch (ApiError e)
        {
            return e.Status;
        }
        catch (RequestValidationException)
        {
            return StatusCodes.Status400BadRequest;
        }
    }

    private static int Pressure(byte[] body)
    {
        try
        {
            AdminRoutes.ParsePressure(body);
            return 0;
        }
        catch (ApiError e)
        {
            return e.Status;
        }
    }

    private async Task<int> Job(byte[] body)
    {
        var http = new DefaultHttpContext();
        http.Request.Body = new MemoryStream(body);
        try
        {
            var entries = await JobBody.ReadAsync(http.Request, new JobBody.Limits(1 << 20, 1 << 16, 100, 1024, "fuzz"), node.Node.Factory, 0);
            // Each invalid line carries an error line that names it; each valid one its request.
            Assert.All(entries, e => Assert.True(e.RequestJson is not null ^ e.ErrorLine is not null));
            return 0;
        }
        catch (ApiError e)
        {
            return e.Status;
        }
    }

    [Fact]
    public async Task Ten_thousand_generated_bodies_get_a_result_or_a_4xx_from_every_parser_and_the_routes_agree()
    {
        var bodies = Gen.Sample(Body(), Bodies, new Rnd(2027UL), 20);
        Assert.Equal(Bodies, bodies.Length);
        var refusedCompletions = new List<(byte[] Body, int Status)>();
        var refusedPressure = new List<(byte[] Body, int Status)>();
        foreach (var body in bodies)
        {
            var completion = Completion(body);
            var pressure = Pressure(body);
            // The body as a job of its own: each of its lines a request.
            var job = await Job(body);
            Assert.True(completion < 500 && pressure < 500 && job < 500,
                $"{completion}/{pressure}/{job} for {Convert.ToHexString(body)} ({Encoding.UTF8.GetString(body)})");
            if (completion >= 400 && refusedCompletions.Count < ThroughHttp) refusedCompletions.Add((body, completion));
            if (pressure >= 400 && refusedPressure.Count < ThroughHttp) refusedPressure.Add((body, pressure));
        }
        // The generator reaches both sides of the parsers: bodies accepted and bodies refused.
        Assert.Contains(bodies, b => Completion(b) == 0);
        Assert.Contains(bodies, b => Pressure(b) == 0);
        Assert.Equal(ThroughHttp, refusedCompletions.Count);
        Assert.Equal(ThroughHttp, refusedPressure.Count);

        using var alice = node.Client(GatewayFixture.AliceKey);
        using var admin = node.Client(GatewayFixture.AdminKey);
        foreach (var (client, route, refused) in new[] { (alice, "/v1/completions", refusedCompletions), (admin, "/admin/pressure", refusedPressure) })
            foreach (var (body, status) in refused)
            {
                using var response = await client.PostAsync(route, new ByteArrayContent(body));
                var text = await response.Content.ReadAsStringAsync();
                Assert.True(status == (int)response.StatusCode, $"{route}: {(int)response.StatusCode} over HTTP, {status} in-process: {text}");
                Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(text).RootElement.GetProperty("error").ValueKind);
            }
    }
}
