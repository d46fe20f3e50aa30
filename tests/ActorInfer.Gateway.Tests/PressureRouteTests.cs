using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.RegularExpressions;
using ActorInfer.Model.Config;
using ActorInfer.TestSupport;
using Xunit.Abstractions;

namespace ActorInfer.Gateway.Tests;

/// <summary>
/// One route for pressure: a schedule given to `generate --config` as a `--pressure` file and the same schedule sent
/// to a node of that configuration as `/admin/pressure` calls enter the same memory-pressure actor, so the planner
/// publishes the same policies and the scheduler drops the same batches, and the outputs are the same.
/// </summary>
[Collection(ChaosCollection.Name)]
public sealed partial class PressureRouteTests(ITestOutputHelper output)
{
    private const string Key = "sk-route";
    private const int Requests = 32, PromptTokens = 8, NewTokens = 480;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    /// <summary>
    /// Decoding steps from each event to the next block's start in the file's run: what an HTTP call may lag by and still
    /// land where the file's event did (before any batch of the block has finished). On a loaded 2-core machine a lag of
    /// about 200 steps was seen, and once in CI more than 430 with a model half as wide and half as deep as <see
    /// cref="WriteModel"/>'s: its steps now take about three times as long, so the margin is seconds of wall time.
    /// </summary>
    private const int Margin = 400;

    /// <summary>
    /// Each event's decoding step (counted over the run) and budget as a fraction of what the largest block needs. The
    /// blocks are planned for the whole context, so a block of fresh requests runs 479 steps; in the file's run the
    /// blocks start at steps 0, 479, 937, 1395 and 1850, so each event lands at least 430 steps before the next block
    /// starts (the test checks it against <see cref="Margin"/>), and the steps an HTTP call takes keep it in its block.
    /// </summary>
    private static readonly (int Step, double Fraction)[] Schedule = [(20, 0.55), (500, 1.0), (960, 0.55), (1420, 1.0)];

    [GeneratedRegex(@"http: listening on (http://\S+)")]
    private static partial Regex Listening();

    [GeneratedRegex(@"\] policy (.+?) for budgets \(")]
    private static partial Regex NodePolicy();

    [GeneratedRegex(@"\] block (\d+): dropped (\d+) GPU batches")]
    private static partial Regex NodeDrop();

    /// <summary>A random OPT checkpoint with a context long enough for blocks of a few hundred steps.</summary>
    private static string WriteModel(string dir)
    {
        var config = new OptConfig
        {
            Name = "route", VocabSize = 1000, HiddenSize = 256, NumHiddenLayers = 8, NumAttentionHeads = 4, FfnDim = 1024,
            MaxPositionEmbeddings = 512, WordEmbedProjDim = 256,
        };
        Directory.CreateDirectory(dir);
        ReferenceModels.WriteConfigJson(dir, config);
        TestCheckpoints.WriteRandom(dir, config, seed: 7, dtype: TorchSharp.torch.ScalarType.Float32);
        return dir;
    }

    private static List<string> Collapsed(IEnumerable<string> policies)
    {
        var list = new List<string>();
        foreach (var p in policies)
            if (list.Count == 0 || list[^1] != p) list.Add(p);
        return list;
    }

    private static string OutputIds(string line) => JsonDocument.Parse(line).RootElement.GetProperty("output_ids").GetRawText();

    [Fact]
    public async Task A_schedule_as_a_pressure_file_and_as_admin_pressure_calls_gives_the_same_policies_drops_and_outputs()
    {
        var dir = TestPaths.TempDir();
        var model = WriteModel(Path.Combine(dir, "model"));
        var config = Path.Combine(dir, "node.conf");
        File.WriteAllText(config, $$"""
            actorinfer {
              model = {{JsonSerializer.Serialize(model)}}
              scheduler { max-gpu-batch-size = 4, max-gpu-batches = 4 }
              planner { whole-context = on }
              memory { disk-budget = "1GiB" }
            }
            """);
        var job = Path.Combine(dir, "job.jsonl");
        File.WriteAllLines(job, Enumerable.Range(0, Requests).Select(i =>
            $"{{\"id\":\"r{i}\",\"prompt\":[2,{string.Join(",", Enumerable.Range(0, PromptTokens - 1).Select(j => 10 + (i * 7 + j) % 900))}]," +
            $"\"max_tokens\":{NewTokens},\"temperature\":0,\"ignore_eos\":true}}"));

        // A node of the file, and the same node in this process; then the job through the node's /v1/jobs, each event sent
        // as /admin/pressure once the node has started its step.
        List<string> nodePolicies, nodeDrops, filePolicies, fileDrops;
        string[] nodeResults;
        var outPath = Path.Combine(dir, "out.jsonl");
        long needed;
        using (var node = new NodeProcess("node", "--config", config, "--data-dir", Path.Combine(dir, "data"), "--port", "0", "--api-key", Key))
        {
            var address = Listening().Match(node.WaitForLine(Listening().IsMatch, Timeout)).Groups[1].Value;
            using var client = new HttpClient { BaseAddress = new Uri(address), Timeout = Timeout };
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
            async Task<JsonElement> State()
            {
                using var response = await client.GetAsync("/admin/state");
                return await GatewayFixture.ReadJson(response);
            }
            var state = await State();
            needed = state.GetProperty("compute").GetProperty("largest_block_bytes").GetInt64();
            // The GPU as the device reports it: none on a node without CUDA.
            Assert.Equal(System.Text.Json.JsonValueKind.Null, state.GetProperty("device").ValueKind);
            File.WriteAllLines(Path.Combine(dir, "pressure.jsonl"),
                Schedule.Select(e => $"{{\"at_step\": {e.Step}, \"tier\": \"cpu\", \"budget\": {(long)(e.Fraction * needed)}}}"));

            // The same node in this process first (deterministic: every event at its step): `generate --config` with the
            // schedule as a file.
            using var run = new NodeProcess("generate", "--config", config, "--input", job, "--output", outPath, "--pressure", Path.Combine(dir, "pressure.jsonl"));
            Assert.Equal(0, run.WaitForExit(Timeout));
            var said = run.AllOutput();
            output.WriteLine(string.Join("\n", said.Where(l => l.Contains("pressure:", StringComparison.Ordinal))));
            var policies = said.Single(l => l.Contains("pressure: policies published in order: ", StringComparison.Ordinal));
            filePolicies = Collapsed(policies[(policies.IndexOf("in order: ", StringComparison.Ordinal) + "in order: ".Length)..].Split(" | "));
            var drops = said.Single(l => l.Contains("pressure: drops in order", StringComparison.Ordinal));
            fileDrops = drops[(drops.IndexOf("): ", StringComparison.Ordinal) + 3)..].Split(' ', StringSplitOptions.RemoveEmptyEntries).ToList();

            // Each event lands far from the next block's start, so that the few steps an HTTP call takes keep it in its block.
            var blocks = said.Single(l => l.Contains("pressure: blocks in order", StringComparison.Ordinal));
            var starts = blocks[(blocks.IndexOf("): ", StringComparison.Ordinal) + 3)..].Split(' ', StringSplitOptions.RemoveEmptyEntries)
                .Select(b => long.Parse(b[(b.IndexOf('@') + 1)..], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            foreach (var (step, _) in Schedule)
            {
                var next = starts.Where(b => b > step).DefaultIfEmpty(long.MaxValue).Min();
                Assert.True(next - step >= Margin, $"the event at step {step} is {next - step} steps before a block starts: {blocks}");
            }

            using var posted = await client.PostAsync("/v1/jobs", new StringContent(File.ReadAllText(job)));
            var id = (await GatewayFixture.ReadJson(posted)).GetProperty("id").GetString()!;
            foreach (var (step, fraction) in Schedule)
            {
                await GatewayFixture.Poll(State, s => s.GetProperty("queue").GetProperty("decoding_steps").GetInt64() >= step, Timeout, every: TimeSpan.FromMilliseconds(2));
                using var pressed = await client.PostAsync("/admin/pressure", GatewayFixture.Json($$"""{"tier": "cpu", "budget": {{(long)(fraction * needed)}}}"""));
                Assert.Equal(200, (int)pressed.StatusCode);
            }
            await GatewayFixture.Poll(async () =>
            {
                using var r = await client.GetAsync($"/v1/jobs/{id}");
                return await GatewayFixture.ReadJson(r);
            }, j => j.GetProperty("state").GetString() == "completed", Timeout);
            nodeResults = (await client.GetStringAsync($"/v1/jobs/{id}/results")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
            var lines = node.AllOutput();
            nodePolicies = Collapsed(lines.Select(l => NodePolicy().Match(l)).Where(m => m.Success).Select(m => m.Groups[1].Value));
            nodeDrops = lines.Select(l => NodeDrop().Match(l)).Where(m => m.Success).Select(m => $"{m.Groups[1].Value}:{m.Groups[2].Value}").ToList();
        }

        output.WriteLine($"node policies: {string.Join(" | ", nodePolicies)}\nnode drops: {string.Join(" ", nodeDrops)}");
        Assert.True(fileDrops.Count > 0, "the schedule dropped nothing");
        Assert.True(filePolicies.Count >= 4, string.Join(" | ", filePolicies));
        Assert.Equal(filePolicies, nodePolicies);
        Assert.Equal(fileDrops, nodeDrops);
        // Every request answered once, with the same tokens both ways.
        var fileResults = File.ReadAllLines(outPath);
        Assert.Equal(Requests, fileResults.Length);
        Assert.Equal(fileResults.Select(OutputIds), nodeResults.Select(OutputIds));
    }
}
