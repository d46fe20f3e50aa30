using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;

namespace ActorInfer.Cli.Replay;

/// <summary>One tenant of a replay: a trace and the model its requests go to.</summary>
public sealed record ReplayTenant(string Model, string TracePath, IReadOnlyList<TraceRequest> Requests);

/// <summary>How a trace becomes requests: time scale, token caps, the prompts' seed.</summary>
/// <param name="Speedup">Trace seconds per replay second.</param>
/// <param name="MaxPromptTokens">A prompt is at most this long (and fits the model's context with its output); null: the context.</param>
/// <param name="MaxOutputTokens">At most this many tokens are asked for; null: what the trace says, within the context.</param>
/// <param name="SampleEvery">How often the node's state (memory held, budgets) is read during the run.</param>
public sealed record ReplayOptions(double Speedup, int? MaxPromptTokens, int? MaxOutputTokens, long Seed, TimeSpan SampleEvery);

/// <summary>A request as it was sent and answered.</summary>
public sealed record RequestRecord(string Tenant, int Line, double SentAt, int PromptTokens, int MaxTokens, RequestOutcome Outcome);

/// <summary>The node's memory at one moment: per model the bytes its compute tier holds and its budget there, and the node's budget of that tier.</summary>
public sealed record MemorySample(double At, IReadOnlyDictionary<string, (long Held, long Budget)> Models, long DeviceBudget = 0)
{
    /// <summary>Per model at that moment: its progress counters and whether it had work (empty where the node does not report them).</summary>
    public IReadOnlyDictionary<string, ModelProgress> Progress { get; init; } = new Dictionary<string, ModelProgress>();

    /// <summary>The GPU's used and total bytes as the device reports them (null on a node without CUDA).</summary>
    public (long Used, long Total)? Device { get; init; }
}

/// <summary>
/// A model's progress as <c>/admin/state</c> reports it: layer computations finished and decoding steps started (both over
/// the node's life), and whether it had work (requests queued, or a block running).
/// </summary>
public sealed record ModelProgress(long LayersDone, long DecodingSteps, bool HasWork);

/// <summary>
/// Sends every tenant's requests at their (sped-up) arrival times as streamed completions, with prompts of seeded random
/// token ids of the trace's length (capped to the model's context), and records what each took; meanwhile it reads the
/// node's state for the memory each model holds and the budget the arbiter gave it.
/// </summary>
public static class ReplayRun
{
    public sealed record Result(IReadOnlyList<RequestRecord> Requests, IReadOnlyList<MemorySample> Memory, double Seconds, string? ComputeTier,
        IReadOnlyDictionary<string, double> CountersBefore, IReadOnlyDictionary<string, double> CountersAfter)
    {
        /// <summary>Each model's drops, requeues and recomputed tokens over the run, as the node's GPU arbiter counted them (a node of several models).</summary>
        public IReadOnlyDictionary<string, ModelDrops> Drops { get; init; } = new Dictionary<string, ModelDrops>();
    }

    public sealed record ModelDrops(long Drops, long Requeues, long RecomputedTokens);

    public static async Task<Result> Run(NodeClient node, IReadOnlyList<ReplayTenant> tenants, IReadOnlyDictionary<string, ServedModelInfo> models,
        ReplayOptions options, Action<int, long> progress)
    {
        var before = await node.Counters();
        var dropsBefore = await ModelDropCounts(node);
        var records = new ConcurrentBag<RequestRecord>();
        var samples = new List<MemorySample>();
        string? computeTier = null;
        var done = 0;
        var tokens = 0L;
        var clock = Stopwatch.StartNew();
        using var stopSampling = new CancellationTokenSource();
        var sampling = Task.Run(async () =>
        {
            while (!stopSampling.IsCancellationRequested)
            {
                using (var state = await node.State())
                {
                    if (state is null) return;
                    computeTier ??= state.RootElement.TryGetProperty("compute", out var c) ? c.GetProperty("tier").GetString() : null;
                    lock (samples) samples.Add(Sample(clock.Elapsed.TotalSeconds, state.RootElement, computeTier));
                }
                try
                {
                    await Task.Delay(options.SampleEvery, stopSampling.Token);
                }
                catch (TaskCanceledException)
                {
                    return;
                }
            }
        });
        var sends = new List<Task>();
        foreach (var (tenant, t) in tenants.Select((x, i) => (x, i)))
        {
            var model = models[tenant.Model];
            foreach (var (request, r) in tenant.Requests.Select((x, i) => (x, i)))
            {
                var (prompt, maxTokens) = Shape(request, model, options, tenantIndex: t, requestIndex: r);
                var due = TimeSpan.FromSeconds(request.At / options.Speedup);
                sends.Add(Task.Run(async () =>
                {
                    var wait = due - clock.Elapsed;
                    if (wait > TimeSpan.Zero) await Task.Delay(wait);
                    var sentAt = clock.Elapsed.TotalSeconds;
                    var outcome = await node.Stream(tenant.Model, prompt, maxTokens, CancellationToken.None);
                    records.Add(new RequestRecord(tenant.Model, request.Line, sentAt, prompt.Length, maxTokens, outcome));
                    var tokensNow = Interlocked.Add(ref tokens, outcome.Tokens);
                    progress(Interlocked.Increment(ref done), tokensNow);
                }));
            }
        }
        await Task.WhenAll(sends);
        var seconds = clock.Elapsed.TotalSeconds;
        await stopSampling.CancelAsync();
        await sampling;
        var after = await node.Counters();
        var dropsAfter = await ModelDropCounts(node);
        return new Result(records.OrderBy(r => r.SentAt).ToArray(), samples, seconds, computeTier, before, after)
        {
            Drops = dropsAfter.ToDictionary(kv => kv.Key, kv => dropsBefore.TryGetValue(kv.Key, out var b)
                ? new ModelDrops(kv.Value.Drops - b.Drops, kv.Value.Requeues - b.Requeues, kv.Value.RecomputedTokens - b.RecomputedTokens)
                : kv.Value),
        };
    }

    /// <summary>
    /// The prompt (seeded random token ids, the same for the same seed, tenant and request) and the tokens asked for: the
    /// trace's lengths within the caps, the prompt at least one token and the two together within the model's context.
    /// </summary>
    public static (int[] Prompt, int MaxTokens) Shape(TraceRequest request, ServedModelInfo model, ReplayOptions options, int tenantIndex, int requestIndex)
    {
        var output = Math.Clamp(Math.Min(request.GeneratedTokens, options.MaxOutputTokens ?? int.MaxValue), 1, Math.Max(1, model.MaxModelLen - 1));
        var length = Math.Clamp(Math.Min(request.ContextTokens, options.MaxPromptTokens ?? int.MaxValue), 1, Math.Max(1, model.MaxModelLen - output));
        // A fixed mix (HashCode.Combine differs from process to process): the same prompts in every run.
        var random = new Random((int)(unchecked(options.Seed * 0x9E3779B1L ^ tenantIndex * 0x85EBCA6BL ^ requestIndex * 0xC2B2AE35L) & int.MaxValue));
        // Ids past the first few: those are the special tokens (padding, BOS/EOS, unknown) of the models served.
        var low = Math.Min(4, model.VocabSize - 1);
        var prompt = new int[length];
        for (var i = 0; i < length; i++) prompt[i] = random.Next(low, model.VocabSize);
        return (prompt, output);
    }

    /// <summary>What <c>/admin/state</c> says each model's arbiter entry counted so far; empty without an arbiter or an admin key.</summary>
    private static async Task<Dictionary<string, ModelDrops>> ModelDropCounts(NodeClient node)
    {
        var counts = new Dictionary<string, ModelDrops>();
        using var state = await node.State();
        if (state is null || !state.RootElement.TryGetProperty("models", out var models) || models.ValueKind != JsonValueKind.Array) return counts;
        foreach (var m in models.EnumerateArray())
            if (m.TryGetProperty("arbiter", out var a) && a.ValueKind == JsonValueKind.Object)
                counts[m.GetProperty("name").GetString()!] = new ModelDrops(a.GetProperty("drops").GetInt64(), a.GetProperty("requeues").GetInt64(),
                    a.GetProperty("recomputed_tokens").GetInt64());
        return counts;
    }

    internal static MemorySample Sample(double at, JsonElement state, string? computeTier)
    {
        var models = new Dictionary<string, (long, long)>();
        var progress = new Dictionary<string, ModelProgress>();
        if (state.TryGetProperty("models", out var list) && list.ValueKind == JsonValueKind.Array)
            foreach (var m in list.EnumerateArray())
            {
                var tier = computeTier ?? "gpu";
                var name = m.GetProperty("name").GetString()!;
                var held = m.TryGetProperty("bytes_in_use", out var inUse) && inUse.TryGetProperty(tier, out var h) ? h.GetInt64() : 0;
                var budget = m.TryGetProperty("budgets", out var b) && b.TryGetProperty(tier, out var v) ? v.GetInt64() : 0;
                models[name] = (held, budget);
                if (m.TryGetProperty("queue", out var q) && q.TryGetProperty("layers_done", out var layers))
                {
                    // Work the arbiter counts (queued and running sequences) as well as the scheduler's own queue and block.
                    var running = q.TryGetProperty("running_block", out var r) && r.ValueKind == JsonValueKind.Number;
                    var queued = q.TryGetProperty("scheduler", out var s) && s.GetInt32() > 0;
                    var arbiter = m.TryGetProperty("arbiter", out var a) && a.ValueKind == JsonValueKind.Object &&
                                  (a.GetProperty("queued").GetInt64() > 0 || a.GetProperty("running").GetInt64() > 0);
                    progress[name] = new ModelProgress(layers.GetInt64(), q.TryGetProperty("decoding_steps", out var steps) ? steps.GetInt64() : 0,
                        running || queued || arbiter);
                }
            }
        var device = state.TryGetProperty("budgets", out var node) && node.TryGetProperty(computeTier ?? "gpu", out var d) ? d.GetInt64() : 0;
        (long, long)? reported = state.TryGetProperty("device", out var gpu) && gpu.ValueKind == JsonValueKind.Object
            ? (gpu.GetProperty("used_bytes").GetInt64(), gpu.GetProperty("total_bytes").GetInt64())
            : null;
        return new MemorySample(at, models, device) { Progress = progress, Device = reported };
    }
}
