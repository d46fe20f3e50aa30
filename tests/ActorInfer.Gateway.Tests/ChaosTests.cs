using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.RegularExpressions;
using ActorInfer.TestSupport;
using Xunit.Abstractions;

namespace ActorInfer.Gateway.Tests;

/// <summary>
/// The elastic-memory chaos test on a real `actorinfer node` process (CPU, SQLite, the fixture opt-tiny): one job of
/// 700 greedy requests, 100 seeded random pressure events on the node's compute tier (host memory on a CPU node: the
/// gpu tier governs nothing there) between 25% and 100% of the budget its largest block needs, and the node SIGKILLed
/// twice and restarted on the same data folder. Every request is answered exactly once, with the output `generate`
/// gives the same requests without pressure.
/// </summary>
[Collection(ChaosCollection.Name)]
public sealed partial class ChaosTests(ITestOutputHelper output)
{
    private const int Requests = 700;
    private const int PressureEvents = 100;
    private const int Seed = 2026;
    private const string Key = "sk-chaos";

    /// <summary>The issue's range of budgets, as fractions of <c>compute.largest_block_bytes</c> in /admin/state.</summary>
    private const double LowestBudget = 0.25, HighestBudget = 1.0;

    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    /// <summary>
    /// The events follow the job: event k waits until k / <see cref="PressureEvents"/> of four fifths of the job is
    /// done, so the events spread over the job whatever the machine's speed, and at least <see cref="Pause"/> after
    /// the one before, so several land within one block. None waits longer than <see cref="LongestPause"/>: a budget
    /// that fits no sequence holds everything back until the next event.
    /// </summary>
    private static int DoneBefore(int k) => k * Requests * 4 / 5 / PressureEvents;

    private static readonly TimeSpan Pause = TimeSpan.FromMilliseconds(10);
    private static readonly TimeSpan LongestPause = TimeSpan.FromMilliseconds(250);

    [GeneratedRegex(@"http: listening on (http://\S+)")]
    private static partial Regex Listening();

    [GeneratedRegex(@"recovered 1 jobs, (\d+) requests to run, (\d+) of them from checkpoints")]
    private static partial Regex Recovered();

    /// <summary>Greedy requests with prompts of 1 to 24 tokens (token ids, and short texts) and 8 to 32 tokens to generate.</summary>
    private static string[] JobLines(Random random) => Enumerable.Range(0, Requests).Select(i => JsonSerializer.Serialize(new Dictionary<string, object?>
    {
        ["id"] = $"chaos-{i}",
        ["prompt"] = i % 5 == 0
            ? $"Request {random.Next(1000)} of {random.Next(1000)}"
            : Enumerable.Range(0, 1 + random.Next(24)).Select(_ => 3 + random.Next(997)).ToArray(),
        ["max_tokens"] = 8 + random.Next(25),
        ["temperature"] = 0,
        ["ignore_eos"] = true,
    })).ToArray();

    [Fact]
    public async Task A_job_under_random_pressure_with_SIGKILLs_completes_exactly_once_with_the_output_of_a_run_without_pressure()
    {
        var dir = TestPaths.TempDir();
        var model = Fixtures.HfOpt("opt-tiny");
        var config = Path.Combine(dir, "node.conf");
        File.WriteAllText(config, $$"""
            actorinfer {
              model = {{JsonSerializer.Serialize(model)}}
              # Blocks of up to 4 GPU batches of 4: a smaller budget drops batches at a finer grain than 2 of 8.
              scheduler { max-gpu-batch-size = 4, max-gpu-batches = 4 }
              # Snapshots (checkpoints included) replace the journal many times during the job.
              persistence.snapshot-every = 20
            }
            """);
        var data = Path.Combine(dir, "data");
        output.WriteLine($"node output: {Path.Combine(dir, "nodes.log")}");
        var lines = JobLines(new Random(Seed));
        var clock = Stopwatch.StartNew();
        var expected = GatewayFixture.Generate(model, lines);
        output.WriteLine($"reference run: {clock.Elapsed.TotalSeconds:0.0} s");

        var random = new Random(Seed + 1);
        var fractions = Enumerable.Range(0, PressureEvents).Select(_ => LowestBudget + random.NextDouble() * (HighestBudget - LowestBudget)).ToArray();
        var sent = 0;
        var done = 0;
        var drops = 0.0;
        string id;
        int pending, checkpointed;

        // Sends events, each after the job has moved on, until the job has done `until` requests or the events run out.
        async Task Chaos(RunningNode node, string job, int until)
        {
            var (tier, needed) = await node.Compute();
            output.WriteLine($"chaos from {clock.Elapsed.TotalSeconds:0.00} s, event {sent}, {done} done");
            var spent = Stopwatch.StartNew();
            var first = sent;
            while (sent < PressureEvents && done < until)
            {
                await node.Pressure(tier, (long)(fractions[sent++] * needed));
                done = await node.Progress(job, DoneBefore(sent));
            }
            output.WriteLine($"  {sent - first} events in {spent.Elapsed.TotalSeconds:0.00} s, {done} done");
        }

        // First incarnation: killed at an arbitrary point, blocks running, once a sixth of the job is done.
        using (var node = new RunningNode(config, data))
        {
            var (tier, needed) = await node.Compute();
            output.WriteLine($"compute tier {tier}, largest block needs {needed} bytes; budgets from {(long)(LowestBudget * needed)}");
            var footprint = ActorInfer.Actors.Planner.ModelFootprint.Of(ActorInfer.Model.Config.OptConfigs.Resolve(model), 4);
            var oneSequence = footprint.WeightBytes + footprint.CacheBytesPerSequence + footprint.ActivationBytesPerSequence;
            output.WriteLine($"one sequence needs {oneSequence} bytes ({(double)oneSequence / needed:P1}): " +
                             $"{fractions.Count(f => f * needed < oneSequence)} of the {PressureEvents} events leave no room for one");
            id = await node.Submit(lines);
            await Chaos(node, id, Requests / 6);
            Assert.True(await node.Done(id) < Requests, "the node was to be killed mid-job");
            drops += await node.Drops();
            node.Kill();
        }
        output.WriteLine($"first kill after {sent} events at {clock.Elapsed.TotalSeconds:0.0} s, {done} requests done");

        // Second incarnation: killed once half the job is done, right after a squeeze to nothing (an extra event, not
        // one of the 100): the running block sheds every batch and no block starts again, so at the kill the journal
        // holds checkpoints of unfinished requests, and their number is known.
        using (var node = new RunningNode(config, data))
        {
            node.WaitForLine(Recovered());
            await Chaos(node, id, Requests / 2);
            var (tier, needed) = await node.Compute();
            (pending, checkpointed) = await node.Squeeze(tier, id, () => sent < PressureEvents ? (long)(fractions[sent++] * needed) : null);
            Assert.True(pending > 0 && checkpointed > 0, $"{pending} pending, {checkpointed} checkpointed");
            drops += await node.Drops();
            node.Kill();
        }
        output.WriteLine($"second kill after {sent} events at {clock.Elapsed.TotalSeconds:0.0} s: {pending} pending, {checkpointed} of them checkpointed");

        // Third incarnation: resumes exactly what was pending, the checkpointed requests from their checkpoints, and
        // finishes under the remaining events; the pressure is lifted at the end.
        using (var node = new RunningNode(config, data))
        {
            var recovered = node.WaitForLine(Recovered());
            Assert.Equal((pending, checkpointed), (int.Parse(recovered.Groups[1].Value), int.Parse(recovered.Groups[2].Value)));
            await Chaos(node, id, Requests);
            var (tier, needed) = await node.Compute();
            while (sent < PressureEvents) await node.Pressure(tier, (long)(fractions[sent++] * needed));
            await node.Clear(tier);
            var actual = await node.Results(id, Timeout);
            drops += await node.Drops();
            output.WriteLine($"completed at {clock.Elapsed.TotalSeconds:0.0} s; {drops} GPU batches dropped in all");

            Assert.Equal(PressureEvents, sent);
            Assert.Equal(Requests, actual.Length);
            var ids = actual.Select(l => JsonDocument.Parse(l).RootElement.GetProperty("id").GetString()).ToArray();
            Assert.Equal(lines.Select((_, i) => $"chaos-{i}"), ids);
            Assert.DoesNotContain(actual, l => l.Contains("\"error\":", StringComparison.Ordinal));
            Assert.Equal(expected, actual);
        }
    }

    /// <summary>`actorinfer node` with HTTP on a free port and an API key that is the admin key too.</summary>
    private sealed class RunningNode : IDisposable
    {
        private readonly NodeProcess _process;
        private readonly HttpClient _client;

        public string LogPath { get; }

        public RunningNode(string config, string data)
        {
            LogPath = Path.Combine(Path.GetDirectoryName(data)!, "nodes.log");
            _process = new NodeProcess("node", "--config", config, "--data-dir", data, "--port", "0", "--api-key", Key);
            var address = WaitForLine(Listening()).Groups[1].Value;
            _client = new HttpClient { BaseAddress = new Uri(address), Timeout = TimeSpan.FromSeconds(60) };
            _client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        }

        /// <summary>The first line of this process that matches, whether already read or still to come.</summary>
        public Match WaitForLine(Regex pattern) =>
            pattern.Match(_process.Output.FirstOrDefault(pattern.IsMatch) ?? _process.WaitForLine(pattern.IsMatch, Timeout));

        public async Task<(string Tier, long LargestBlockBytes)> Compute()
        {
            var compute = (await Get("/admin/state")).GetProperty("compute");
            return (compute.GetProperty("tier").GetString()!, compute.GetProperty("largest_block_bytes").GetInt64());
        }

        public async Task<string> Submit(IEnumerable<string> lines)
        {
            using var response = await _client.PostAsync("/v1/jobs", new StringContent(string.Join("\n", lines)));
            var job = await GatewayFixture.ReadJson(response);
            Assert.Equal(200, (int)response.StatusCode);
            Assert.Equal(Requests, job.GetProperty("requests").GetInt32());
            return job.GetProperty("id").GetString()!;
        }

        public async Task<int> Done(string id)
        {
            var counts = (await Get($"/v1/jobs/{id}")).GetProperty("counts");
            return counts.GetProperty("total").GetInt32() - counts.GetProperty("pending").GetInt32();
        }

        public async Task Pressure(string tier, long budget)
        {
            using var response = await _client.PostAsync("/admin/pressure", GatewayFixture.Json($$"""{"tier": "{{tier}}", "budget": {{budget}}}"""));
            Assert.Equal(200, (int)response.StatusCode);
        }

        /// <summary>Waits a pause, then until <paramref name="requests"/> of the job are done or the longest pause has passed; returns how many are.</summary>
        public async Task<int> Progress(string id, int requests)
        {
            var deadline = DateTime.UtcNow + LongestPause;
            await Task.Delay(Pause);
            while (true)
            {
                var done = await Done(id);
                if (done >= requests || done == Requests || DateTime.UtcNow >= deadline) return done;
                await Task.Delay(5);
            }
        }

        public async Task Clear(string tier)
        {
            using var response = await _client.PostAsync("/admin/pressure", GatewayFixture.Json($$"""{"tier": "{{tier}}", "budget": "clear"}"""));
            Assert.Equal(200, (int)response.StatusCode);
        }

        /// <summary>
        /// Sets the tier's budget to 0 (no policy: the running block sheds every batch, no block starts) and waits
        /// until no block runs. When that left no checkpointed request (no block was past its prefill), the next
        /// event lets work run a moment and the squeeze is tried again. Returns the job's pending and checkpointed
        /// requests, which stay as they are until the kill.
        /// </summary>
        public async Task<(int Pending, int Checkpointed)> Squeeze(string tier, string id, Func<long?> nextBudget)
        {
            for (var attempt = 0; attempt < 10; attempt++)
            {
                await Pressure(tier, 0);
                await GatewayFixture.Poll(() => Get("/admin/state"), s =>
                    s.GetProperty("policy").ValueKind == JsonValueKind.Null && s.GetProperty("queue").GetProperty("running_block").ValueKind == JsonValueKind.Null,
                    Timeout);
                var counts = (await Get($"/v1/jobs/{id}")).GetProperty("counts");
                var (pending, checkpointed) = (counts.GetProperty("pending").GetInt32(), counts.GetProperty("checkpointed").GetInt32());
                if (checkpointed > 0) return (pending, checkpointed);
                await Pressure(tier, nextBudget() ?? throw new Xunit.Sdk.XunitException("no event left to let work run between squeezes"));
                await Task.Delay(100);
            }
            throw new Xunit.Sdk.XunitException("no squeeze left a checkpointed request");
        }

        /// <summary>GPU batches this process dropped (the counter starts at 0 with each process).</summary>
        public async Task<double> Drops()
        {
            var text = await _client.GetStringAsync("/metrics");
            var m = Regex.Match(text, @"^actorinfer_batch_drops_total (\S+)$", RegexOptions.Multiline);
            return m.Success ? double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : 0;
        }

        public async Task<string[]> Results(string id, TimeSpan timeout)
        {
            await GatewayFixture.Poll(() => Get($"/v1/jobs/{id}"), j => j.GetProperty("state").GetString() is "completed" or "failed" or "cancelled", timeout);
            var text = await _client.GetStringAsync($"/v1/jobs/{id}/results");
            return text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        }

        private async Task<JsonElement> Get(string path)
        {
            using var response = await _client.GetAsync(path);
            Assert.Equal(200, (int)response.StatusCode);
            return await GatewayFixture.ReadJson(response);
        }

        /// <summary>SIGKILL: no shutdown, no flush.</summary>
        public void Kill() => _process.Kill();

        public void Dispose()
        {
            _client.Dispose();
            _process.Dispose();
            File.AppendAllLines(LogPath, _process.AllOutput().Prepend("---- node process"));
        }
    }
}

/// <summary>The chaos test runs alone: its node process should not share the two cores with the gateway suite.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ChaosCollection
{
    public const string Name = "chaos";
}
