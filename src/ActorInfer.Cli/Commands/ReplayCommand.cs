using System.CommandLine;
using System.Globalization;
using ActorInfer.Cli.Replay;

namespace ActorInfer.Cli.Commands;

/// <summary>
/// `actorinfer replay`: drives a running node with request traces (the Azure LLM inference traces' CSV), one tenant per
/// trace and model, and writes what the tenants saw (time to first token, time per output token, latency, throughput)
/// and what the node did (drops, requeues, recomputed tokens, memory held per model with the arbiter's budgets) into
/// DIR/summary.json, DIR/requests.jsonl and DIR/replay.png.
/// </summary>
public static class ReplayCommand
{
    public static Command Create()
    {
        var command = new Command("replay", "Replay request traces (CSV: TIMESTAMP, ContextTokens, GeneratedTokens) against a running node, one tenant per --trace/--model pair.");
        var url = new Option<string>("--url") { Description = "The node's HTTP gateway, e.g. http://127.0.0.1:8000.", Required = true };
        var apiKey = new Option<string?>("--api-key") { Description = "A key of the node (an admin key also reads its state and metrics); default: ACTORINFER_API_KEY." };
        var trace = new Option<string[]>("--trace") { Description = "A trace file; give one --model per --trace, in the same order.", Required = true };
        var model = new Option<string[]>("--model") { Description = "The served model the trace before it goes to.", Required = true };
        var speedup = new Option<double>("--speedup") { Description = "Trace seconds per replay second (default 1).", DefaultValueFactory = _ => 1.0 };
        var duration = new Option<string?>("--duration") { Description = "Replay only this much of each trace (trace time: 60s, 10m, 1h)." };
        var output = new Option<string>("--output") { Description = "The folder for summary.json, requests.jsonl and replay.png.", DefaultValueFactory = _ => "replay" };
        var maxPrompt = new Option<int?>("--max-prompt-tokens") { Description = "Cap on prompt lengths (default: the model's context less the output)." };
        var maxOutput = new Option<int?>("--max-output-tokens") { Description = "Cap on the tokens asked for (default: the trace's, within the context)." };
        var seed = new Option<long>("--seed") { Description = "Seed of the random prompt token ids (default 0).", DefaultValueFactory = _ => 0 };
        var sampleEvery = new Option<string>("--sample-every") { Description = "How often the node's memory is read (default 250ms).", DefaultValueFactory = _ => "250ms" };
        var timeout = new Option<string>("--request-timeout") { Description = "How long one request may take (default 10m).", DefaultValueFactory = _ => "10m" };
        foreach (var o in new Option[] { url, apiKey, trace, model, speedup, duration, output, maxPrompt, maxOutput, seed, sampleEvery, timeout })
            command.Options.Add(o);
        command.SetAction(parse =>
        {
            var traces = parse.GetValue(trace) ?? [];
            var models = parse.GetValue(model) ?? [];
            if (traces.Length != models.Length)
                throw new CliException($"give one --model per --trace ({traces.Length} --trace, {models.Length} --model)", 2);
            if (models.Distinct().Count() != models.Length)
                throw new CliException("each --model names one tenant: a model given twice would mix two traces' figures", 2);
            var factor = parse.GetValue(speedup);
            if (!(factor > 0) || !double.IsFinite(factor)) throw new CliException($"--speedup: {factor} is not a positive factor", 2);
            if (parse.GetValue(maxPrompt) is <= 0) throw new CliException("--max-prompt-tokens must be positive", 2);
            if (parse.GetValue(maxOutput) is <= 0) throw new CliException("--max-output-tokens must be positive", 2);
            var window = parse.GetValue(duration) is { } d ? TraceFile.ParseDuration(d, "--duration") : (TimeSpan?)null;
            var options = new ReplayOptions(factor, parse.GetValue(maxPrompt), parse.GetValue(maxOutput), parse.GetValue(seed),
                TraceFile.ParseDuration(parse.GetValue(sampleEvery)!, "--sample-every"));
            var key = parse.GetValue(apiKey) ?? Environment.GetEnvironmentVariable("ACTORINFER_API_KEY");
            if (string.IsNullOrEmpty(key)) throw new CliException("--api-key (or ACTORINFER_API_KEY) is required", 2);
            var tenants = new List<ReplayTenant>();
            for (var i = 0; i < traces.Length; i++)
            {
                try
                {
                    tenants.Add(new ReplayTenant(models[i], traces[i], TraceFile.Read(traces[i], window)));
                }
                catch (TraceFileException ex)
                {
                    throw new CliException(ex.Message, 2);
                }
                catch (IOException ex)
                {
                    throw new CliException($"--trace {traces[i]}: {ex.Message}", 2);
                }
            }
            return Run(parse.GetValue(url)!, key, tenants, options, parse.GetValue(output)!,
                TraceFile.ParseDuration(parse.GetValue(timeout)!, "--request-timeout"));
        });
        return command;
    }

    private static int Run(string url, string key, IReadOnlyList<ReplayTenant> tenants, ReplayOptions options, string output, TimeSpan requestTimeout)
    {
        using var node = new NodeClient(url, key, requestTimeout);
        var served = node.Models().GetAwaiter().GetResult().ToDictionary(m => m.Id);
        foreach (var tenant in tenants)
            if (!served.ContainsKey(tenant.Model))
                throw new CliException($"--trace {tenant.TracePath}: the node does not serve the model '{tenant.Model}' (it serves " +
                    $"{string.Join(", ", served.Keys.Select(k => $"'{k}'"))})", 2);
        Directory.CreateDirectory(output);
        var total = tenants.Sum(t => t.Requests.Count);
        var span = tenants.Max(t => t.Requests[^1].At) / options.Speedup;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"replay: {total} requests of {tenants.Count} tenants ({string.Join(", ", tenants.Select(t => $"{t.Model}: {t.Requests.Count} from {Path.GetFileName(t.TracePath)}"))}) over {span:F1} s at {options.Speedup}x"));
        ReplayRun.Result? result = null;
        ProgressReporter.Run("replay", total, report => result = ReplayRun.Run(node, tenants, served, options, report).GetAwaiter().GetResult());
        var summary = ReplaySummary.Build(tenants, result!, options, url);
        ReplaySummary.Write(Path.Combine(output, "summary.json"), summary);
        using (var lines = new StreamWriter(Path.Combine(output, "requests.jsonl")))
            foreach (var r in result!.Requests)
                lines.WriteLine(System.Text.Json.JsonSerializer.Serialize(new
                {
                    tenant = r.Tenant, line = r.Line, sent_at = r.SentAt, prompt_tokens = r.PromptTokens, max_tokens = r.MaxTokens,
                    completed = r.Outcome.Completed, ttft = r.Outcome.Ttft, tpot = r.Outcome.Tpot, e2e = r.Outcome.EndToEnd, tokens = r.Outcome.Tokens,
                    error = r.Outcome.Error,
                }));
        ReplayChart.Draw(tenants, result, Path.Combine(output, "replay.png"),
            string.Create(CultureInfo.InvariantCulture, $"replay at {options.Speedup}x: time to first token per tenant"));
        foreach (var tenant in tenants)
        {
            var t = summary["tenants"]![tenant.Model]!;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"replay: {tenant.Model}: {t["completed"]}/{t["requests"]} completed, ttft p50 {t["ttft_p50"]} s p99 {t["ttft_p99"]} s, {(double)t["throughput"]!:F1} tokens/s"));
        }
        var run = summary["run"]!;
        Console.WriteLine($"replay: drops {run["drops"]}, requeues {run["requeues"]}, recomputed tokens {run["recomputed_tokens"]}; wrote {Path.Combine(output, "summary.json")}");
        return 0;
    }
}
