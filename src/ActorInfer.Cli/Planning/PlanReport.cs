using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using ActorInfer.Planning;
using PeakPhase = ActorInfer.Planning.Phase;

namespace ActorInfer.Cli.Planning;

/// <summary>What `plan` prints: a searched policy, or a fully given one evaluated as is.</summary>
public sealed record PlanReport
{
    public required ModelSpec Model { get; init; }
    public required Workload Workload { get; init; }
    public required HardwareProfile Hardware { get; init; }
    public required MemoryBudget Budget { get; init; }
    public required CostEstimate Estimate { get; init; }
    /// <summary>Null when the policy was given whole and only evaluated.</summary>
    public BindingConstraint? Binding { get; init; }
    public required bool Searched { get; init; }
    public required int CandidatesEvaluated { get; init; }
    public required double SearchMilliseconds { get; init; }

    public bool Fits => Budget.Fits(Estimate.PeakMemory);

    public static PlanReport Create(ModelSpec model, Workload workload, HardwareProfile hardware, MemoryBudget budget, SearchOptions options)
    {
        if (options.FixedShares.Count == LinearExpression.VariableCount && options is { GpuBatchSize: { } batch, NumGpuBatches: { } count, CpuAttention: { } cpuAttention })
        {
            // A whole policy: evaluate it as given, even when it overflows the budget, so that it can be compared.
            var clock = Stopwatch.StartNew();
            var shares = options.FixedShares;
            var policy = new Policy(batch, count,
                new TierFractions(shares[Placement.WeightsGpu], shares[Placement.WeightsCpu], shares[Placement.WeightsDisk]),
                new TierFractions(shares[Placement.CacheGpu], shares[Placement.CacheCpu], shares[Placement.CacheDisk]),
                new TierFractions(shares[Placement.ActivationsGpu], shares[Placement.ActivationsCpu], shares[Placement.ActivationsDisk]))
            {
                CpuAttention = cpuAttention,
                CompressWeights = options.CompressWeights,
                CompressCache = options.CompressCache,
                SpreadWeights = options.SpreadWeights,
            };
            var estimate = CostModel.Evaluate(model, workload, policy, hardware);
            return new PlanReport
            {
                Model = model, Workload = workload, Hardware = hardware, Budget = budget, Estimate = estimate,
                Searched = false, CandidatesEvaluated = 1, SearchMilliseconds = clock.Elapsed.TotalMilliseconds,
            };
        }
        var result = PolicySearch.Find(model, workload, hardware, budget, options);
        return new PlanReport
        {
            Model = model, Workload = workload, Hardware = hardware, Budget = budget, Estimate = result.Estimate,
            Binding = result.Binding, Searched = true, CandidatesEvaluated = result.CandidatesEvaluated,
            SearchMilliseconds = result.SearchTime.TotalMilliseconds,
        };
    }

    public string ToText()
    {
        var policy = Estimate.Policy;
        var text = new StringBuilder();
        void Line(string label, string value) => text.Append(CultureInfo.InvariantCulture, $"{label,-14}{value}\n");
        Line("model", $"{Model.Name} ({Model.NumLayers} layers, hidden {Model.HiddenSize}, {ByteSize.Format(Model.TotalWeightBytes)} of weights)");
        Line("hardware", Hardware.Name);
        Line("workload", $"prompt {Workload.PromptLength}, generate {Workload.GenerationLength}");
        Line("policy", $"{(Searched ? "searched" : "given")}: GPU batch {policy.GpuBatchSize} x {policy.NumGpuBatches} GPU batches = block of {policy.BlockSize}");
        Line("  weights", $"{Shares(policy.Weights)}  (realized: {Shares(Estimate.RealizedWeights.Fractions)})");
        Line("  cache", Shares(policy.Cache));
        Line("  activations", Shares(policy.Activations));
        Line("  flags", $"cpu attention {(policy.CpuAttention ? "on" : "off")}, compress weights {(policy.CompressWeights ? "on" : "off")}, compress cache {(policy.CompressCache ? "on" : "off")}, weights {(policy.SpreadWeights ? "spread over the model" : "placed by FlexGen's rule")}");
        Line("prefill", Phase(Estimate.Prefill));
        Line("decoding", Phase(Estimate.Decode));
        Line("total", $"{Estimate.TotalSeconds:0.###} s for {Estimate.GeneratedTokens} tokens");
        Line("throughput", $"{Estimate.ThroughputTokensPerSecond:0.###} token/s");
        var peak = Estimate.PeakMemory;
        Line("peak memory", $"GPU {ByteSize.Format(peak.Gpu)} of {ByteSize.Format(Budget.Usable(Tier.Gpu))}, CPU {ByteSize.Format(peak.Cpu)} of {ByteSize.Format(Budget.Usable(Tier.Cpu))}, disk {ByteSize.Format(peak.Disk)} of {ByteSize.Format(Budget.Usable(Tier.Disk))}");
        Line("device peak", $"{ByteSize.Format(DevicePeak.Predicted(Estimate, 0))} as the device would report the GPU's tensors with the allocator's reserve ({DevicePeak.AllocatorReserveShare * 100:0}% of the buffers among them), before the CUDA context");
        Line("GPU peak", $"{(Estimate.GpuPeakPhase == PeakPhase.Prefill ? "prefill" : "decoding")}: " +
            string.Join(", ", Estimate.GpuPeakParts.Where(p => p.Bytes > 0.5).Select(p => $"{p.Name.Replace('_', ' ')} {ByteSize.Format(p.Bytes)}")));
        if (!Fits)
            Line("warning", "the given policy does not fit the memory budget");
        if (Binding is not null)
            Line("binding", Binding.ToString());
        Line("search", $"{SearchMilliseconds:0.##} ms, {CandidatesEvaluated} candidate(s)");
        return text.ToString();
    }

    public string ToJson()
    {
        var policy = Estimate.Policy;
        var peak = Estimate.PeakMemory;
        var document = new Dictionary<string, object?>
        {
            ["model"] = Model.Name,
            ["hardware"] = Hardware.Name,
            ["prompt_len"] = Workload.PromptLength,
            ["gen_len"] = Workload.GenerationLength,
            ["searched"] = Searched,
            ["gpu_batch_size"] = policy.GpuBatchSize,
            ["num_gpu_batches"] = policy.NumGpuBatches,
            ["weights"] = Fractions(policy.Weights),
            ["realized_weights"] = Fractions(Estimate.RealizedWeights.Fractions),
            ["cache"] = Fractions(policy.Cache),
            ["activations"] = Fractions(policy.Activations),
            ["cpu_attention"] = policy.CpuAttention,
            ["compress_weight"] = policy.CompressWeights,
            ["compress_cache"] = policy.CompressCache,
            ["weight_placement"] = policy.SpreadWeights ? "spread" : "flexgen",
            ["prefill_seconds"] = Estimate.PrefillSeconds,
            ["decode_seconds"] = Estimate.DecodeSeconds,
            ["total_seconds"] = Estimate.TotalSeconds,
            ["throughput_tokens_per_s"] = Estimate.ThroughputTokensPerSecond,
            ["peak_memory_bytes"] = new Dictionary<string, double> { ["gpu"] = Math.Ceiling(peak.Gpu), ["cpu"] = Math.Ceiling(peak.Cpu), ["disk"] = Math.Ceiling(peak.Disk) },
            ["budget_bytes"] = new Dictionary<string, long> { ["gpu"] = Budget.GpuBytes, ["cpu"] = Budget.CpuBytes, ["disk"] = Budget.DiskBytes },
            ["gpu_peak_phase"] = Estimate.GpuPeakPhase == PeakPhase.Prefill ? "prefill" : "decode",
            ["gpu_peak_terms_bytes"] = Estimate.GpuPeakParts.ToDictionary(p => p.Name, p => Math.Ceiling(p.Bytes)),
            ["fits"] = Fits,
            ["binding_constraint"] = Binding?.ToString(),
            ["candidates_evaluated"] = CandidatesEvaluated,
            ["search_ms"] = SearchMilliseconds,
        };
        return JsonSerializer.Serialize(document, new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    private static Dictionary<string, double> Fractions(TierFractions fractions) =>
        new() { ["gpu"] = fractions.Gpu, ["cpu"] = fractions.Cpu, ["disk"] = fractions.Disk };

    private static string Shares(TierFractions fractions) =>
        string.Create(CultureInfo.InvariantCulture, $"gpu {fractions.Gpu * 100:0.0}%  cpu {fractions.Cpu * 100:0.0}%  disk {fractions.Disk * 100:0.0}%");

    private static string Phase(PhaseEstimate phase) => string.Create(CultureInfo.InvariantCulture,
        $"{phase.TotalSeconds:0.###} s ({phase.Layers} layers x {phase.Repetitions}; per layer {phase.LayerSeconds * 1000:0.##} ms: " +
        $"load {phase.LoadStreamSeconds * 1000:0.##}, store {phase.StoreStreamSeconds * 1000:0.##}, compute {phase.ComputeStreamSeconds * 1000:0.##} ms; {phase.Bottleneck}-bound)");
}
