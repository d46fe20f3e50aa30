using System.Text.Json;
using System.Text.Json.Nodes;

namespace ActorInfer.Cli.Replay;

/// <summary>
/// <c>summary.json</c> of a replay. Per tenant (model): requests, completed, failed, time to first token and time per
/// output token (p50, p99, seconds), end-to-end latency, generated tokens and throughput (tokens per second of the run).
/// Per run: drops, requeues and recomputed tokens (the node's counters over the run), and the memory each model held on
/// the compute tier over time with the budget the arbiter gave it.
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
            foreach (var (name, (held, budget)) in sample.Models) models[name] = new JsonObject { ["held"] = held, ["budget"] = budget };
            memory.Add(new JsonObject { ["t"] = Math.Round(sample.At, 3), ["device_budget"] = sample.DeviceBudget, ["models"] = models });
        }
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
                ["memory"] = memory,
            },
        };
    }

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
