using System.Text.Json;
using System.Text.Json.Nodes;

namespace ActorInfer.Cli.Replay;

/// <summary>
/// <c>summary.json</c> of a replay. Per tenant (model): requests, completed, failed, time to first token and time per
/// output token (p50, p99, seconds), end-to-end latency, generated tokens and throughput (tokens per second of the run).
/// Per run: drops, requeues and recomputed tokens (the node's counters over the run), and the memory each model held on
/// the compute tier over time with the budget the arbiter gave it, and each model's progress (a job's model too): its layers
/// done and the longest time it had work and made none.
/// </summary>
public static class ReplaySummary
{
    public const string Attribution = "Azure LLM inference trace 2023 (CC-BY 4.0): Patel et al., \"Splitwise: Efficient generative LLM inference " +
        "using phase splitting\", ISCA 2024";

    public static JsonObject Build(IReadOnlyList<ReplayTenant> tenants, ReplayRun.Result result, ReplayOptions options, string url)
    {
        var perTenant = new JsonObject();
        foreach (var tenant in tenants)
        {
            var records = result.Requests.Where(r => r.Tenant == tenant.Model).ToArray();
            var completed = records.Where(r => r.Outcome.Completed).ToArray();
            var tokens = completed.Sum(r => (long)r.Outcome.Tokens);
            perTenant[tenant.Model] = new JsonObject
            {
                ["trace"] = tenant.TracePath,
                ["requests"] = records.Length,
                ["completed"] = completed.Length,
                ["failed"] = records.Length - completed.Length,
                ["ttft_p50"] = Percentile(completed.Select(r => r.Outcome.Ttft!.Value), 50),
                ["ttft_p99"] = Percentile(completed.Select(r => r.Outcome.Ttft!.Value), 99),
                ["tpot_p50"] = Percentile(completed.Where(r => r.Outcome.Tpot is not null).Select(r => r.Outcome.Tpot!.Value), 50),
                ["tpot_p99"] = Percentile(completed.Where(r => r.Outcome.Tpot is not null).Select(r => r.Outcome.Tpot!.Value), 99),
                ["e2e_p50"] = Percentile(completed.Select(r => r.Outcome.EndToEnd), 50),
                ["e2e_p99"] = Percentile(completed.Select(r => r.Outcome.EndToEnd), 99),
                ["tokens"] = tokens,
                ["throughput"] = result.Seconds > 0 ? tokens / result.Seconds : 0,
                ["first_error"] = records.FirstOrDefault(r => !r.Outcome.Completed)?.Outcome.Error,
                // The model's own share of the run's drops (null where the node has no arbiter or the key is not an admin's).
                ["drops"] = result.Drops.TryGetValue(tenant.Model, out var d) ? d.Drops : null,
                ["requeues"] = d?.Requeues,
                ["recomputed_tokens"] = d?.RecomputedTokens,
            };
        }
        double Counter(string name) => result.CountersAfter.GetValueOrDefault(name) - result.CountersBefore.GetValueOrDefault(name);
        var memory = new JsonArray();
        foreach (var sample in result.Memory)
        {
            var models = new JsonObject();
            foreach (var (name, (held, budget)) in sample.Models)
            {
                models[name] = new JsonObject { ["held"] = held, ["budget"] = budget };
                if (sample.Progress.TryGetValue(name, out var p))
                {
                    models[name]!["layers_done"] = p.LayersDone;
                    models[name]!["has_work"] = p.HasWork;
                }
            }
            var entry = new JsonObject { ["t"] = Math.Round(sample.At, 3), ["device_budget"] = sample.DeviceBudget, ["models"] = models };
            if (sample.Device is { } reported) entry["device_used"] = reported.Used;
            memory.Add(entry);
        }
        var reportedUsed = result.Memory.Where(s => s.Device is not null).Select(s => (double)s.Device!.Value.Used).ToArray();
        var heldTotals = result.Memory.Select(s => s.Models.Values.Sum(v => v.Held)).ToArray();
        return new JsonObject
        {
            ["url"] = url,
            ["speedup"] = options.Speedup,
            ["seed"] = options.Seed,
            ["seconds"] = result.Seconds,
            ["source"] = Attribution,
            ["tenants"] = perTenant,
            ["run"] = new JsonObject
            {
                ["drops"] = Counter("actorinfer_batch_drops_total"),
                ["requeues"] = Counter("actorinfer_requeues_total"),
                ["recomputed_tokens"] = Counter("actorinfer_recomputed_tokens_total"),
                ["out_of_memory"] = Counter("actorinfer_device_out_of_memory_total"),
                ["compute_tier"] = result.ComputeTier,
                ["memory_held_mean_bytes"] = heldTotals.Length > 0 ? heldTotals.Average() : 0,
                // The node's budget of the compute tier, averaged like the bytes held (the device's share held is their ratio).
                ["device_budget_mean_bytes"] = result.Memory.Count > 0 ? result.Memory.Average(s => (double)s.DeviceBudget) : 0,
                // The GPU's used memory as the device reports it (every process, the CUDA context and the caching allocator's
                // reserve included), averaged over the samples, and its size; null on a node without CUDA.
                ["device_used_mean_bytes"] = reportedUsed.Length > 0 ? reportedUsed.Average() : null,
                ["device_total_bytes"] = result.Memory.FirstOrDefault(s => s.Device is not null)?.Device?.Total,
                ["memory"] = memory,
                ["progress"] = Progress(result.Memory),
            },
        };
    }

    /// <summary>
    /// Per model that reports progress (every model of the node, a job's too, not only the replayed tenants): the layer
    /// computations and decoding steps over the run, and the longest stretch in which it had work and made none.
    /// </summary>
    private static JsonObject Progress(IReadOnlyList<MemorySample> samples)
    {
        var progress = new JsonObject();
        foreach (var name in samples.SelectMany(s => s.Progress.Keys).Distinct())
        {
            var own = samples.Where(s => s.Progress.ContainsKey(name)).Select(s => (s.At, s.Progress[name])).ToArray();
            progress[name] = new JsonObject
            {
                ["layers_done"] = own[^1].Item2.LayersDone - own[0].Item2.LayersDone,
                ["decoding_steps"] = own[^1].Item2.DecodingSteps - own[0].Item2.DecodingSteps,
                ["seconds_with_work"] = SecondsWithWork(own),
                ["longest_without_progress_seconds"] = LongestWithoutProgress(own),
            };
        }
        return progress;
    }

    /// <summary>
    /// The longest time (seconds) between two samples over which a model had work and its layers did not move: it starts at
    /// the sample where it last moved (or where its work began) and ends at the next that shows a move (or no work, or the
    /// last sample). Resolution is the sampling interval.
    /// </summary>
    public static double LongestWithoutProgress(IReadOnlyList<(double At, ModelProgress Progress)> samples)
    {
        var longest = 0.0;
        double? since = null;
        for (var i = 0; i < samples.Count; i++)
        {
            var (at, now) = samples[i];
            var moved = i > 0 && now.LayersDone != samples[i - 1].Progress.LayersDone;
            if (since is { } s) longest = Math.Max(longest, at - s);
            since = !now.HasWork ? null : moved || since is null ? at : since;
        }
        return longest;
    }

    /// <summary>Seconds between samples where the model had work at both ends.</summary>
    private static double SecondsWithWork(IReadOnlyList<(double At, ModelProgress Progress)> samples) =>
        samples.Zip(samples.Skip(1), (from, to) => (From: from, To: to)).Where(p => p.From.Progress.HasWork && p.To.Progress.HasWork)
            .Sum(p => p.To.At - p.From.At);

    /// <summary>The nearest-rank percentile (seconds), or null without values.</summary>
    public static double? Percentile(IEnumerable<double> values, double percent)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0) return null;
        var rank = (int)Math.Ceiling(percent / 100 * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }

    public static void Write(string path, JsonObject summary) =>
        File.WriteAllText(path, summary.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
}
