using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ActorInfer.TestSupport;
using Xunit.Abstractions;

namespace ActorInfer.Actors.Tests;

/// <summary>
/// A cluster as `scripts/cluster-up --workers 2` starts it (a gateway and two workers, each its own `actorinfer node`
/// process, the journal in a real PostgreSQL database), serving the fixture model: a 600-request job through the gateway
/// is spread over both workers; a worker SIGKILLed while it holds requests of a job loses none of them (they are handed to
/// the other worker), every request completes once with the fixture's greedy tokens, and the worker started again
/// (scripts/cluster-up again, on a new cluster port) rejoins as a new member and takes its share of the next job; the gateway SIGKILLed while a job runs and started again
/// recovers every job from the journal: states and results as before, the running job completed.
/// </summary>
public sealed class ClusterScaleOutSpecs(ITestOutputHelper output)
{
    private const string Key = "sk-cluster-test";
    /// <summary>Host memory for a worker whose blocks of the fixture's requests then hold 16 sequences, not the bounds' 32 (4 x 8).</summary>
    private const string SmallDeviceBudget = "1536KiB";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);
    private static readonly string Fixture = Fixtures.HfOpt("opt-tiny");

    [Fact]
    public async Task Two_workers_share_a_job_a_killed_worker_loses_nothing_and_a_killed_gateway_recovers_every_job()
    {
        using var database = PostgresTestDatabase.Create();
        var dir = TestPaths.TempDir();
        var port = FreePort();
        var cluster = new Cluster(dir, database.ConnectionString, port, output);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        var expected = File.ReadLines(Path.Combine(Fixture, "expected.jsonl")).Select(l => JsonNode.Parse(l)!).ToArray();
        var body = JobBody(expected, 600);
        try
        {
            var clock = Stopwatch.StartNew();
            cluster.Up();
            output.WriteLine($"cluster-up: {clock.Elapsed.TotalSeconds:F1} s");

            // Spread: each worker completes at least 30% of a job.
            var before = await Completed(http);
            var jobA = await Submit(http, body);
            await WaitForState(http, jobA, "completed");
            var resultsA = await CheckResults(http, jobA, expected, 600);
            AssertSpread(before, await State(http), 600);

            // A worker killed while it holds requests of a job: nothing is lost or answered twice.
            // Killed as soon as the job is accepted: the gateway has handed each worker its first orders (64 requests)
            // then, and the job runs for longer than a worker takes to see its peer gone. 1,000 lines (a tenant queues at
            // most 1,024): warm workers once finished a job of 600 before the answer to its POST came back.
            var killed = cluster.Address("worker-1");
            var jobB = await Submit(http, JobBody(expected, 1000));
            cluster.Kill("worker-1");
            var afterKill = await Job(http, jobB);
            output.WriteLine($"worker-1 killed with job B at {afterKill["counts"]!.ToJsonString()}");
            Assert.NotEqual("completed", (string)afterKill["state"]!);
            cluster.Up();
            await WaitForState(http, jobB, "completed");
            var resultsB = await CheckResults(http, jobB, expected, 1000);
            var state = await State(http);
            Assert.True((long)state["redispatched"]! > 0, $"no request was handed to another worker: {state.ToJsonString()}");
            output.WriteLine($"job B completed {clock.Elapsed.TotalSeconds:F1} s in; {state["redispatched"]} requests re-dispatched");

            // The restarted worker rejoined as new and takes its share again.
            var rejoined = cluster.Address("worker-1");
            Assert.NotEqual(killed, rejoined);
            await WaitFor(async () => (await State(http))["workers"]!.AsArray().Any(w => (string)w!["address"]! == rejoined && (bool)w["up"]!),
                "worker-1 up again");
            // A fresh process runs its first blocks slower (compilation, the allocator's first requests) than its warm
            // peer, and routing by capacity rightly gives it less meanwhile: one small job warms it before the share is measured.
            var warmUp = await Submit(http, JobBody(expected, 128));
            await WaitForState(http, warmUp, "completed");
            before = await Completed(http);
            var jobC = await Submit(http, body);
            await WaitForState(http, jobC, "completed");
            var resultsC = await CheckResults(http, jobC, expected, 600);
            var shares = AssertSpread(before, await State(http), 600);
            Assert.Contains(rejoined, shares.Keys);
            Assert.DoesNotContain(killed, shares.Keys);

            // The gateway killed while a job runs, and started again: every job as it was, the running one completed.
            var jobD = await Submit(http, body);
            cluster.Kill("gateway");
            cluster.Up();
            await WaitForState(http, jobD, "completed");
            await CheckResults(http, jobD, expected, 600);
            foreach (var (job, results) in new[] { (jobA, resultsA), (jobB, resultsB), (jobC, resultsC) })
            {
                Assert.Equal("completed", (string)(await Job(http, job))["state"]!);
                Assert.Equal(results, await http.GetStringAsync($"/v1/jobs/{job}/results"));
            }
            var list = JsonNode.Parse(await http.GetStringAsync("/v1/jobs?limit=10"))!["data"]!.AsArray();
            Assert.Equal(new[] { jobD, jobC, warmUp, jobB, jobA }, list.Select(j => (string)j!["id"]!).ToArray());
            output.WriteLine($"done in {clock.Elapsed.TotalSeconds:F1} s");
        }
        finally
        {
            cluster.Down();
        }
    }

    [Fact]
    public async Task A_worker_frozen_past_the_failure_detector_is_downed_its_work_completes_elsewhere_and_it_stops_once_resumed()
    {
        using var database = PostgresTestDatabase.Create();
        var dir = TestPaths.TempDir();
        var port = FreePort();
        var cluster = new Cluster(dir, database.ConnectionString, port, output);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        var expected = File.ReadLines(Path.Combine(Fixture, "expected.jsonl")).Select(l => JsonNode.Parse(l)!).ToArray();
        try
        {
            cluster.Up();
            // Both workers must have reported their capacity before the freeze: a worker frozen before its first report
            // is given nothing, and the job would complete on the other without testing the hand-over.
            await WaitFor(async () => (await State(http))["workers"]!.AsArray().Count(w => (bool)w!["up"]! && (int)w["slots"]! > 0) == 2,
                "both workers up and reporting their capacity");
            var frozen = cluster.Address("worker-1");
            using var worker = Process.GetProcessById(cluster.Pid("worker-1"));
            // Frozen before the job arrives: the gateway still counts it as up for the failure detector's pause and hands
            // it its share, which then has to complete elsewhere. (Frozen after, it may have finished its share already.)
            cluster.Signal("worker-1", "STOP");
            var job = await Submit(http, JobBody(expected, 600));
            try
            {
                await WaitForState(http, job, "completed");
            }
            finally
            {
                cluster.Signal("worker-1", "CONT");
            }
            var results = await CheckResults(http, job, expected, 600);
            var state = await State(http);
            Assert.True((long)state["redispatched"]! > 0, state.ToJsonString());
            Assert.False((bool)state["workers"]!.AsArray().Single(w => (string)w!["address"]! == frozen)!["up"]!);
            // Resumed, it learns that it was downed and stops; nothing it finishes on the way is answered again.
            Assert.True(worker.WaitForExit(TimeSpan.FromSeconds(60)), "the downed worker did not stop after SIGCONT");
            Assert.Contains("error: the node's actor system stopped without being asked to", File.ReadAllText(Path.Combine(dir, "worker-1.log")));
            Assert.Equal(results, await http.GetStringAsync($"/v1/jobs/{job}/results"));
            Assert.Equal("completed", (string)(await Job(http, job))["state"]!);
        }
        finally
        {
            cluster.Down();
        }
    }

    [Fact]
    public async Task Two_workers_given_different_device_settings_report_their_own_capacity_and_each_serves_a_share()
    {
        // A host without CUDA has one device that computes, its own: the two workers' device settings differ in what that
        // device holds for them, as two GPUs of different sizes would (worker-1 the host's memory, worker-2 a budget whose
        // blocks hold half as many sequences). Each reports the capacity its own device gives and serves a share of a job.
        using var database = PostgresTestDatabase.Create();
        var dir = TestPaths.TempDir();
        var port = FreePort();
        var cluster = new Cluster(dir, database.ConnectionString, port, output);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        var expected = File.ReadLines(Path.Combine(Fixture, "expected.jsonl")).Select(l => JsonNode.Parse(l)!).ToArray();
        try
        {
            cluster.Up("--workers", "1");
            cluster.StartWorker("worker-2", $"actorinfer.memory.cpu-budget = \"{SmallDeviceBudget}\"");
            await WaitFor(async () => (await State(http))["workers"]!.AsArray().Count(w => (bool)w!["up"]! && (int)w["slots"]! > 0) == 2,
                "both workers up and reporting their capacity");
            var job = await Submit(http, JobBody(expected, 600));
            await WaitForState(http, job, "completed");
            await CheckResults(http, job, expected, 600);
            var state = await State(http);
            output.WriteLine(state.ToJsonString());
            var workers = state["workers"]!.AsArray().Where(w => (bool)w!["up"]!).ToDictionary(w => (string)w!["address"]!);
            var (large, small) = (workers[cluster.Address("worker-1")]!, workers[cluster.Address("worker-2")]!);
            Assert.All(new[] { large, small }, w => Assert.Equal("cpu", (string)w["device"]!));
            Assert.True((int)small["slots"]! < (int)large["slots"]!, $"the smaller device reports no less capacity: {state.ToJsonString()}");
            Assert.Equal(600, (long)large["completed"]! + (long)small["completed"]!);
            Assert.All(new[] { large, small }, w => Assert.True((long)w["completed"]! >= 60, $"a worker served less than 10%: {state.ToJsonString()}"));

            // A streamed completion through the gateway: the worker sends each step's tokens on as its scheduler chooses them,
            // one chunk each, before the result, whose chunk then carries only the finish reason. The last step's tokens and
            // the result travel apart, so under load the tokens may reach the gateway after the result: they then ride in the
            // result's chunk, and every earlier step still has its own.
            var tokens = expected[0]["greedy_new_tokens"]!.AsArray().Count;
            var body = $$"""{"prompt": {{expected[0]["prompt_ids"]!.ToJsonString()}}, "max_tokens": {{tokens}}, "temperature": 0, "ignore_eos": true, "stream": true}""";
            using var streamed = await http.PostAsync("/v1/completions", new StringContent(body, Encoding.UTF8, "application/json"));
            var events = (await streamed.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
            Assert.True(streamed.IsSuccessStatusCode, string.Join("\n", events));
            var choices = events[..^1].Select(e => JsonNode.Parse(e["data: ".Length..])!["choices"]![0]!).ToList();
            Assert.InRange(choices.Count, tokens, tokens + 1);
            Assert.All(choices[..^1], c => Assert.Null(c["finish_reason"]?.GetValue<string>()));
            if (choices.Count == tokens + 1) Assert.Equal("", (string)choices[^1]["text"]!);
            Assert.Equal("length", (string)choices[^1]["finish_reason"]!);
            // Whichever chunk a token rode in, the stream says what the same completion says unstreamed.
            using var whole = await http.PostAsync("/v1/completions", new StringContent(body.Replace("\"stream\": true", "\"stream\": false"),
                Encoding.UTF8, "application/json"));
            Assert.True(whole.IsSuccessStatusCode, await whole.Content.ReadAsStringAsync());
            var text = (string)JsonNode.Parse(await whole.Content.ReadAsStringAsync())!["choices"]![0]!["text"]!;
            Assert.Equal(text, string.Concat(choices.Select(c => (string)c["text"]!)));
        }
        finally
        {
            cluster.Down();
        }
    }

    [Fact]
    public void With_gpus_each_worker_is_given_its_own_device()
    {
        // On a machine without CUDA every worker refuses its device by name: worker 1 the host's GPU 0, worker 2 its GPU 1.
        using var database = PostgresTestDatabase.Create();
        var dir = TestPaths.TempDir();
        var cluster = new Cluster(dir, database.ConnectionString, FreePort(), output);
        try
        {
            Assert.Throws<InvalidOperationException>(() => cluster.Up("--gpus"));
            foreach (var (worker, device) in new[] { ("worker-1", "cuda (CUDA_VISIBLE_DEVICES=0)"), ("worker-2", "cuda (CUDA_VISIBLE_DEVICES=1)") })
            {
                var log = Path.Combine(dir, worker + ".log");
                var deadline = DateTime.UtcNow + Timeout;
                while (!File.ReadAllText(log).Contains($"'{device}' was asked for, but CUDA is not available", StringComparison.Ordinal))
                {
                    Assert.True(DateTime.UtcNow < deadline, $"{worker} did not refuse {device}:\n{File.ReadAllText(log)}");
                    Thread.Sleep(200);
                }
            }
        }
        finally
        {
            cluster.Down();
        }
    }

    /// <summary>Every result of the job came from a worker, and each worker up now completed at least 30% of them.</summary>
    private static Dictionary<string, long> AssertSpread(Dictionary<string, long> before, JsonNode state, int total)
    {
        var workers = state["workers"]!.AsArray();
        var done = workers.ToDictionary(w => (string)w!["address"]!, w => (long)w!["completed"]! - before.GetValueOrDefault((string)w!["address"]!));
        Assert.Equal(total, done.Values.Sum());
        var shares = workers.Where(w => (bool)w!["up"]!).ToDictionary(w => (string)w!["address"]!, w => done[(string)w!["address"]!]);
        Assert.Equal(2, shares.Count);
        foreach (var (worker, count) in shares)
            Assert.True(count >= 0.3 * total, $"{worker} completed {count} of {total}: {state.ToJsonString()}");
        return shares;
    }

    /// <summary>600 greedy requests cycling over the fixture's prompts, each for as many tokens as the fixture holds.</summary>
    private static string JobBody(JsonNode[] expected, int lines)
    {
        var sb = new StringBuilder();
        for (var i = 0; i < lines; i++)
        {
            var e = expected[i % expected.Length];
            sb.Append(new JsonObject
            {
                ["id"] = $"r{i}", ["prompt"] = e["prompt_ids"]!.DeepClone(), ["max_tokens"] = e["greedy_new_tokens"]!.AsArray().Count,
                ["temperature"] = 0, ["ignore_eos"] = true,
            }.ToJsonString()).Append('\n');
        }
        return sb.ToString();
    }

    /// <summary>Every line once, in order, with the fixture's greedy tokens; returns the results as served.</summary>
    private static async Task<string> CheckResults(HttpClient http, string job, JsonNode[] expected, int lines)
    {
        var text = await http.GetStringAsync($"/v1/jobs/{job}/results");
        var results = text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!).ToArray();
        Assert.Equal(lines, results.Length);
        for (var i = 0; i < lines; i++)
        {
            Assert.Equal($"r{i}", (string)results[i]["id"]!);
            Assert.Equal(expected[i % expected.Length]["greedy_new_tokens"]!.ToJsonString(), results[i]["output_ids"]!.ToJsonString());
        }
        return text;
    }

    private static async Task<string> Submit(HttpClient http, string body)
    {
        using var response = await http.PostAsync("/v1/jobs", new StringContent(body, Encoding.UTF8, "application/jsonl"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        return (string)JsonNode.Parse(text)!["id"]!;
    }

    private static async Task<JsonNode> Job(HttpClient http, string job) => JsonNode.Parse(await http.GetStringAsync($"/v1/jobs/{job}"))!;

    private static async Task<JsonNode> State(HttpClient http) => JsonNode.Parse(await http.GetStringAsync("/admin/state"))!;

    /// <summary>Results each worker address has completed, as the gateway counts them.</summary>
    private static async Task<Dictionary<string, long>> Completed(HttpClient http) =>
        (await State(http))["workers"]!.AsArray().ToDictionary(w => (string)w!["address"]!, w => (long)w!["completed"]!);

    private static Task WaitForState(HttpClient http, string job, string state) =>
        WaitFor(async () => (string)(await Job(http, job))["state"]! == state, $"job {job} {state}");

    private static async Task WaitFor(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (true)
        {
            try
            {
                if (await condition()) return;
            }
            catch (HttpRequestException)
            {
                // The gateway is starting again.
            }
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"not within {Timeout}: {what}");
            await Task.Delay(100);
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>scripts/cluster-up and cluster-down on the test's database, folder and port, running the CLI built beside the tests.</summary>
    private sealed class Cluster(string dir, string connection, int port, ITestOutputHelper output)
    {
        public void Up(params string[] more) =>
            Run("cluster-up", ["--workers", "2", "--model", Fixture, "--port", $"{port}", "--api-key", Key, .. more]);

        public int Pid(string node) =>
            int.Parse(File.ReadAllText(Path.Combine(dir, node + ".pid")).Trim(), System.Globalization.CultureInfo.InvariantCulture);

        public void Signal(string node, string signal)
        {
            using var kill = Process.Start("kill", [$"-{signal}", $"{Pid(node)}"]);
            kill.WaitForExit();
            Assert.Equal(0, kill.ExitCode);
        }

        public void Down() => Run("cluster-down");

        /// <summary>
        /// A worker started beside cluster-up's, from hocon/cluster-worker.conf and <paramref name="hocon"/>, joining the
        /// gateway; its pid and cluster port where cluster-up keeps them, so that cluster-down stops it.
        /// </summary>
        public void StartWorker(string name, string hocon)
        {
            var clusterPort = FreePort();
            var conf = Path.Combine(dir, name + ".conf");
            File.WriteAllText(conf, File.ReadAllText(Path.Combine(TestPaths.RepositoryRoot, "hocon", "cluster-worker.conf")) +
                $"\n{hocon}\nactorinfer.cluster {{ port = {clusterPort}, seed-nodes = [\"{Address("gateway")}\"] }}\n");
            var start = new ProcessStartInfo("dotnet") { WorkingDirectory = TestPaths.RepositoryRoot, UseShellExecute = false };
            foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "actorinfer.dll"), "node", "--config", conf, "--model", Fixture,
                         "--data-dir", Path.Combine(dir, name) })
                start.ArgumentList.Add(a);
            start.Environment["ACTORINFER_DEVICE"] = "cpu";
            start.RedirectStandardOutput = start.RedirectStandardError = true;
            var process = Process.Start(start)!;
            var log = File.AppendText(Path.Combine(dir, name + ".log"));
            log.AutoFlush = true;
            process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
            process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            File.WriteAllText(Path.Combine(dir, name + ".pid"), $"{process.Id}");
            File.WriteAllText(Path.Combine(dir, name + ".cluster-port"), $"{clusterPort}");
        }

        /// <summary>A node's cluster address, from the port cluster-up chose for it.</summary>
        public string Address(string node) => $"akka.tcp://actorinfer@127.0.0.1:{File.ReadAllText(Path.Combine(dir, node + ".cluster-port")).Trim()}";

        public void Kill(string node)
        {
            using var process = Process.GetProcessById(Pid(node));
            process.Kill();
            process.WaitForExit();
        }

        private void Run(string script, params string[] args)
        {
            var start = new ProcessStartInfo("bash")
            {
                WorkingDirectory = TestPaths.RepositoryRoot,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            start.ArgumentList.Add(Path.Combine(TestPaths.RepositoryRoot, "scripts", script));
            foreach (var a in args) start.ArgumentList.Add(a);
            start.Environment["ACTORINFER_CLUSTER_DIR"] = dir;
            start.Environment["ACTORINFER_POSTGRES_CONNECTION"] = connection;
            start.Environment["ACTORINFER_CLI"] = $"dotnet {Path.Combine(AppContext.BaseDirectory, "actorinfer.dll")}";
            start.Environment["ACTORINFER_CLUSTER_TIMEOUT"] = "120";
            using var process = Process.Start(start)!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(TimeSpan.FromSeconds(150))) process.Kill(entireProcessTree: true);
            process.WaitForExit();
            output.WriteLine($"{script}: exit {process.ExitCode}\n{stderr.Result}{stdout.Result}");
            if (process.ExitCode != 0)
            {
                foreach (var log in Directory.GetFiles(dir, "*.log")) output.WriteLine($"--- {log}\n{File.ReadAllText(log)}");
                throw new InvalidOperationException($"scripts/{script} failed with exit {process.ExitCode}: {stderr.Result}");
            }
        }
    }
}
