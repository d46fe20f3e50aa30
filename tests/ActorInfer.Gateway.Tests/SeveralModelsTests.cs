using System.Text.Json;
using ActorInfer.Actors.Arbiter;
using ActorInfer.TestSupport;
using Akka.Actor;

namespace ActorInfer.Gateway.Tests;

/// <summary>
/// A node of two models on one compute tier under the GPU arbiter, driven by a minute of the Azure traces (sped up 10x)
/// through `actorinfer replay` run as its own process: every request completes once with the tokens the model gives it
/// alone, the high-priority model's requests are never dropped, and the replay writes its summary.
/// </summary>
public sealed class SeveralModelsTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(3);
    private static string Model => Path.Combine(GatewayFixture.RepositoryRoot, "models", "opt-tiny");
    private static string Trace(string name) => Path.Combine(GatewayFixture.RepositoryRoot, "tests", "fixtures", "traces", $"azure-{name}-1min.csv");

    /// <summary>
    /// Host memory is the compute tier of a CPU node: 5 MiB for both (each needs about 1 MiB for its weights and one
    /// sequence, 3.5 MiB for a full block of 32), so a burst of the chat model squeezes the batch model.
    /// </summary>
    private static string Config(string dataDir, string arbiter = "", int batchPriority = 0) => $$"""
        actorinfer {
          models = [
            { name = "chat", model = "{{Model}}", priority = 10 },
            { name = "batch", model = "{{Model}}", priority = {{batchPriority}} },
          ]
          device = "cpu"
          data-dir = "{{dataDir}}"
          memory { gpu-budget = 0, cpu-budget = "5MiB", disk-budget = "auto" }
          scheduler { max-gpu-batch-size = 8, max-gpu-batches = 4 }
          arbiter { poll-interval = 50ms, change-threshold = 1, release-after = 300ms {{arbiter}} }
          # Conservative block sizing on as well: blocks after a fall leave headroom (the tokens must not change).
          planner { hardware = "t4-flexgen", headroom-history = 4 }
          http { enabled = on, port = 0 }
        }
        """;

    /// <summary>A node of the two models (<see cref="Config"/>) on <paramref name="dir"/>'s data folder, serving.</summary>
    private static async Task<StartedNode> StartTwoModels(string dir, string arbiter = "", int batchPriority = 0)
    {
        var dataDir = Path.Combine(dir, "data");
        var config = Path.Combine(dir, "node.conf");
        await File.WriteAllTextAsync(config, Config(dataDir, arbiter, batchPriority));
        return await StartedNode.Start(config, dataDir);
    }

    [Fact]
    public async Task Two_models_under_a_replayed_trace_answer_every_request_once_and_never_drop_the_high_priority_one()
    {
        var dir = TestPaths.TempDir();
        await using var node = await StartTwoModels(dir);
        var url = GatewayApp.BaseAddress(node.App);

        using (var client = node.Client())
        {
            var models = await GatewayFixture.ReadJson(await client.GetAsync("/v1/models"));
            Assert.Equal(["chat", "batch"], models.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()));
            var unknown = await client.PostAsync("/v1/completions", new StringContent("""{"model": "nope", "prompt": [5, 6], "max_tokens": 2}"""));
            Assert.Equal(404, (int)unknown.StatusCode);
            var error = (await GatewayFixture.ReadJson(unknown)).GetProperty("error");
            Assert.Equal("model", error.GetProperty("param").GetString());
            Assert.Contains("'nope'", error.GetProperty("message").GetString());
            Assert.Contains("'chat', 'batch'", error.GetProperty("message").GetString());

            // A job for the batch model: its lines run there, a line naming a model the node does not serve gets an error line.
            var body = "{\"prompt\": [5, 6, 7], \"max_tokens\": 3, \"temperature\": 0}\n" +
                       "{\"model\": \"nope\", \"prompt\": [5, 6, 7], \"max_tokens\": 3}\n" +
                       "{\"model\": \"chat\", \"prompt\": [5, 6, 7], \"max_tokens\": 3, \"temperature\": 0}\n";
            Assert.Equal(404, (int)(await client.PostAsync("/v1/jobs?model=nope", new StringContent(body))).StatusCode);
            var job = (await GatewayFixture.ReadJson(await client.PostAsync("/v1/jobs?model=batch", new StringContent(body)))).GetProperty("id").GetString();
            await GatewayFixture.Poll(async () => await GatewayFixture.ReadJson(await client.GetAsync($"/v1/jobs/{job}")),
                j => j.GetProperty("state").GetString() == "completed", TimeSpan.FromMinutes(1));
            var jobLines = (await client.GetStringAsync($"/v1/jobs/{job}/results")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(3, jobLines.Length);
            Assert.Equal(JsonDocument.Parse(jobLines[0]).RootElement.GetProperty("output_ids").GetRawText(),
                JsonDocument.Parse(jobLines[2]).RootElement.GetProperty("output_ids").GetRawText());
            Assert.Contains("the model 'nope' does not exist", jobLines[1]);
        }

        var output = Path.Combine(dir, "replay");
        var run = NodeProcess.Run(Limit, "replay", "--url", url, "--api-key", StartedNode.Key, "--trace", Trace("conv"), "--model", "chat",
            "--trace", Trace("code"), "--model", "batch", "--speedup", "10", "--max-output-tokens", "8", "--output", output);
        var all = string.Join("\n", run.Output);
        Assert.True(run.ExitCode == 0, all);

        // The summary: per tenant and per run, with every request completed.
        using var summary = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(output, "summary.json")));
        var tenants = summary.RootElement.GetProperty("tenants");
        var expected = new Dictionary<string, int> { ["chat"] = File.ReadAllLines(Trace("conv")).Length - 1, ["batch"] = File.ReadAllLines(Trace("code")).Length - 1 };
        foreach (var (name, requests) in expected)
        {
            var t = tenants.GetProperty(name);
            foreach (var key in new[] { "requests", "completed", "failed", "ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99", "throughput" })
                Assert.True(t.TryGetProperty(key, out _), $"{name} has no {key}:\n{t}");
            Assert.Equal(requests, t.GetProperty("requests").GetInt32());
            Assert.True(requests == t.GetProperty("completed").GetInt32(), $"{name}: {t}");
            Assert.Equal(0, t.GetProperty("failed").GetInt32());
            Assert.True(t.GetProperty("ttft_p99").GetDouble() >= t.GetProperty("ttft_p50").GetDouble());
            Assert.True(t.GetProperty("throughput").GetDouble() > 0);
        }
        var runFigures = summary.RootElement.GetProperty("run");
        foreach (var key in new[] { "drops", "requeues", "recomputed_tokens" }) Assert.True(runFigures.TryGetProperty(key, out _), key);
        // The device's own figure: none on a node without CUDA.
        Assert.Equal(JsonValueKind.Null, runFigures.GetProperty("device_used_mean_bytes").ValueKind);
        var memory = runFigures.GetProperty("memory").EnumerateArray().ToList();
        Assert.NotEmpty(memory);
        Assert.All(memory, m => Assert.True(m.GetProperty("models").GetProperty("chat").GetProperty("budget").GetInt64() > 0));
        Assert.True(new FileInfo(Path.Combine(output, "replay.png")).Length > 0);

        // The high-priority model's blocks were never dropped (the arbiter hears every drop of every model).
        var state = await node.Node.Arbiter!.Ask<ArbiterProtocol.State>(ArbiterProtocol.GetState.Instance, TimeSpan.FromSeconds(10));
        Assert.Equal(0, state.Tenants.Single(t => t.Name == "chat").Drops);
        Assert.Equal(0, tenants.GetProperty("chat").GetProperty("drops").GetInt64());
        Assert.Equal(state.Tenants.Single(t => t.Name == "batch").Drops, tenants.GetProperty("batch").GetProperty("drops").GetInt64());
        using (var client = node.Client())
        {
            var metrics = await client.GetStringAsync("/metrics");
            Assert.Contains("actorinfer_model_budget_bytes{model=\"chat\"}", metrics);
            Assert.Contains("actorinfer_model_batch_drops{model=\"chat\"} 0", metrics);

            // Operator pressure applies on top: the arbiter divides what /admin/pressure leaves, and each model's budget follows.
            var pressure = await client.PostAsync("/admin/pressure", new StringContent("""{"tier": "cpu", "budget": "4MiB"}"""));
            Assert.Equal(200, (int)pressure.StatusCode);
            var divided = await GatewayFixture.Poll(async () => await GatewayFixture.ReadJson(await client.GetAsync("/admin/state")),
                s => s.GetProperty("arbiter").GetProperty("device").GetProperty("cpu").GetInt64() == 4L << 20 &&
                     s.GetProperty("models").EnumerateArray().Sum(m => m.GetProperty("budgets").GetProperty("cpu").GetInt64()) == 4L << 20,
                TimeSpan.FromSeconds(10));
            Assert.All(divided.GetProperty("models").EnumerateArray(), m =>
                Assert.Equal(m.GetProperty("arbiter").GetProperty("share").GetInt64(), m.GetProperty("budgets").GetProperty("cpu").GetInt64()));
        }

        // Every request answered once: one result file of one line each, with the tokens the model gives that prompt alone.
        var results = Directory.GetFiles(node.Node.Settings.ResultsDir, "cmpl-*.jsonl");
        Assert.Equal(expected.Values.Sum(), results.Length);
        var lines = results.Select(f => File.ReadAllLines(f)).ToList();
        Assert.All(lines, l => Assert.Single(l));
        var answered = lines.Select(l => JsonDocument.Parse(l[0]).RootElement.Clone()).ToList();
        var input = Path.Combine(dir, "alone.jsonl");
        await File.WriteAllLinesAsync(input, answered.Select(a => JsonSerializer.Serialize(new
        {
            prompt = a.GetProperty("prompt_ids").EnumerateArray().Select(i => i.GetInt32()).ToArray(),
            max_tokens = a.GetProperty("output_ids").GetArrayLength(), temperature = 0, ignore_eos = true,
        })));
        var aloneOutput = Path.Combine(dir, "alone-out.jsonl");
        var alone = NodeProcess.Run(Limit, "generate", "--model", Model, "--input", input, "--output", aloneOutput);
        Assert.True(alone.ExitCode == 0, string.Join("\n", alone.Output));
        var reference = File.ReadAllLines(aloneOutput).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("output_ids").GetRawText()).ToList();
        Assert.Equal(reference, answered.Select(a => a.GetProperty("output_ids").GetRawText()));

        // A model the node does not serve: refused before anything is sent, naming the trace file.
        var wrong = NodeProcess.Run(Limit, "replay", "--url", url, "--api-key", StartedNode.Key, "--trace", Trace("code"), "--model", "nope",
            "--output", Path.Combine(dir, "wrong"));
        Assert.Equal(2, wrong.ExitCode);
        var line = Assert.Single(wrong.Output, l => l.StartsWith("stderr: error:", StringComparison.Ordinal));
        Assert.Contains(Trace("code"), line);
        Assert.Contains("'nope'", line);
    }

    /// <summary>
    /// One queue without priorities (`arbiter.one-queue = on`, the baseline): the two models never run blocks at the
    /// same time, both run, and each takes the device in turn while the other has work waiting.
    /// </summary>
    [Fact]
    public async Task Under_one_queue_the_models_take_the_device_in_turns_one_block_at_a_time()
    {
        await using var node = await StartTwoModels(TestPaths.TempDir(), ", one-queue = on", batchPriority: 10);
        var events = new System.Collections.Concurrent.ConcurrentQueue<(string Model, bool Started, int Block)>();
        // One observer for both: a scheduler tells it of its block's end before it hands the device on, so its mailbox
        // holds the two schedulers' events in the order they happened.
        var names = node.Node.Models.ToDictionary(m => m.Scheduler, m => m.Name);
        var observer = node.Node.System.ActorOf(Props.Create(() => new BlockEvents(names, events)));
        foreach (var m in node.Node.Models) m.Scheduler.Tell(new Actors.Scheduling.SchedulerProtocol.Observe(observer));
        using var client = node.Client();
        var line = "{\"prompt\": [5, 6, 7, 8], \"max_tokens\": 6, \"temperature\": 0}\n";
        // Both jobs posted at once, so that neither model drains its queue before the other's job is accepted (posted one
        // after the other on a loaded machine, the first one's blocks all ran before the second POST was read).
        const int lines = 400;
        var jobs = await Task.WhenAll(new[] { "batch", "chat" }.Select(async model =>
            (await GatewayFixture.ReadJson(await client.PostAsync($"/v1/jobs?model={model}",
                new StringContent(string.Concat(Enumerable.Repeat(line, lines)))))).GetProperty("id").GetString()!));
        foreach (var job in jobs)
        {
            var done = await GatewayFixture.Poll(async () => await GatewayFixture.ReadJson(await client.GetAsync($"/v1/jobs/{job}")),
                j => j.GetProperty("state").GetString() is "completed" or "failed", TimeSpan.FromMinutes(2));
            Assert.Equal("completed", done.GetProperty("state").GetString());
            Assert.Equal(lines, done.GetProperty("counts").GetProperty("completed").GetInt32());
        }
        // The observers hear each scheduler's events in order; across the two, a block starts only once the other's ended.
        await Task.Delay(200);
        var running = new HashSet<string>();
        var starts = new List<string>();
        foreach (var e in events)
        {
            if (e.Started)
            {
                Assert.True(running.Count == 0, $"{e.Model} started block {e.Block} while {string.Join(", ", running)} ran");
                running.Add(e.Model);
                starts.Add(e.Model);
            }
            else running.Remove(e.Model);
        }
        Assert.Contains("chat", starts);
        Assert.Contains("batch", starts);
        // Turns, not one model's queue drained first: from the first block of the model that came second until the last
        // block of the one that finished first, both had work waiting, and the blocks alternate.
        var second = Math.Max(starts.IndexOf("chat"), starts.IndexOf("batch"));
        var end = Math.Min(starts.LastIndexOf("chat"), starts.LastIndexOf("batch"));
        Assert.True(end - second >= 2, string.Join(" ", starts));
        for (var k = second; k < end; k++) Assert.True(starts[k] != starts[k + 1], $"block {k + 1} of {string.Join(" ", starts)}");
    }

    /// <summary>Records the schedulers' block starts and ends, named by the model whose scheduler sent them.</summary>
    private sealed class BlockEvents : ReceiveActor
    {
        public BlockEvents(IReadOnlyDictionary<IActorRef, string> models, System.Collections.Concurrent.ConcurrentQueue<(string, bool, int)> events)
        {
            Receive<Actors.Scheduling.SchedulerProtocol.BlockStarted>(m => events.Enqueue((models[Sender], true, m.Block)));
            Receive<Actors.Scheduling.SchedulerProtocol.BlockFinished>(m => events.Enqueue((models[Sender], false, m.Block)));
            ReceiveAny(_ => { });
        }
    }

    /// <summary>
    /// Each model's layer actors and scheduler run on a tensor thread of their own (its own dispatcher of one dedicated
    /// thread), so that one model's host-side work (a block's buffers page-locked inline, a wait for its copies) never
    /// holds up the other's; within a model, all of them share that one thread.
    /// </summary>
    [Fact]
    public async Task Each_model_runs_on_a_tensor_thread_of_its_own()
    {
        await using var node = await StartTwoModels(TestPaths.TempDir());
        var system = node.Node.System;
        var threads = new List<int>();
        for (var i = 0; i < 2; i++)
        {
            var actors = new List<IActorRef> { node.Node.Models[i].Scheduler };
            for (var layer = 0; layer < 2; layer++)
                actors.Add(await system.ActorSelection($"/user/model-{i}-layer-{layer}").ResolveOne(TimeSpan.FromSeconds(10)));
            var dispatchers = actors.Select(a => ((ActorRefWithCell)a).Underlying.Props.Dispatcher).Distinct().ToList();
            Assert.Equal([$"actorinfer.dispatchers.tensor-model-{i}"], dispatchers);
            var dispatcher = system.Dispatchers.Lookup(dispatchers[0]);
            var seen = new List<int>();
            for (var run = 0; run < 3; run++) seen.Add(await ThreadOf(dispatcher));
            threads.Add(Assert.Single(seen.Distinct()));
        }
        Assert.NotEqual(threads[0], threads[1]);
        Assert.DoesNotContain(Environment.CurrentManagedThreadId, threads);
    }

    /// <summary>
    /// The model below the node's top priority runs its tensor thread at `arbiter.lower-priority-nice` (10 by default) and
    /// `arbiter.lower-priority-threads` intra-op threads, so that its attention on the CPU yields the host's cores to the
    /// top model's thread; the top model's thread is unchanged.
    /// </summary>
    [Fact]
    public async Task The_lower_priority_models_tensor_thread_runs_at_the_configured_nice_value_and_threads()
    {
        await using var node = await StartTwoModels(TestPaths.TempDir(), ", lower-priority-nice = 7, lower-priority-threads = 1");
        using var client = node.Client();
        // Each scheduler handles a request first: its thread enters its settings before its first work.
        foreach (var model in new[] { "chat", "batch" })
        {
            var reply = await client.PostAsync("/v1/completions",
                new StringContent($"{{\"model\": \"{model}\", \"prompt\": [5, 6, 7], \"max_tokens\": 2, \"temperature\": 0}}"));
            Assert.True(reply.IsSuccessStatusCode, await reply.Content.ReadAsStringAsync());
        }
        var seen = new Dictionary<string, (int Nice, int Threads)>();
        for (var i = 0; i < 2; i++)
        {
            var dispatcher = node.Node.System.Dispatchers.Lookup($"actorinfer.dispatchers.tensor-model-{i}");
            var read = new TaskCompletionSource<(int, int)>(TaskCreationOptions.RunContinuationsAsynchronously);
            dispatcher.Schedule(() => read.SetResult((Actors.Scheduling.HostShare.CurrentNice(), TorchSharp.torch.get_num_threads())));
            seen[node.Node.Models[i].Name] = await read.Task.WaitAsync(TimeSpan.FromSeconds(10));
        }
        var fresh = -1;
        var thread = new Thread(() => fresh = TorchSharp.torch.get_num_threads());
        thread.Start();
        thread.Join();
        Assert.Equal((0, fresh), seen["chat"]);
        Assert.Equal((7, 1), seen["batch"]);
    }

    private static Task<int> ThreadOf(Akka.Dispatch.MessageDispatcher dispatcher)
    {
        var thread = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        dispatcher.Schedule(() => thread.SetResult(Environment.CurrentManagedThreadId));
        return thread.Task.WaitAsync(TimeSpan.FromSeconds(10));
    }
}
