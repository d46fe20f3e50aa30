using ActorInfer.Actors.Node;
using System.Text;
using System.Text.Json;
using ActorInfer.Cli.Running;
using ActorInfer.Planning;

namespace ActorInfer.Cli.Bench;

public static class BenchReport
{
    public static string Text(RunSetup setup, BenchRun m, IReadOnlyList<BenchRun> runs)
    {
        var p = setup.Policy;
        var b = new StringBuilder();
        b.AppendLine($"model            {setup.Config.Name} ({(setup.ThroughActors ? "through the actors" : "runtime called directly")})");
        b.AppendLine($"policy           {p}");
        var realized = Realized(setup);
        b.AppendLine($"weights placed   gpu {realized.Gpu * 100:F1}%, cpu {realized.Cpu * 100:F1}%, disk {realized.Disk * 100:F1}% (realized)");
        b.AppendLine($"block            {m.BlockSize} sequences, prompt {m.PromptLength}, generate {m.GenerationLength}");
        b.AppendLine($"prefill          {m.PrefillSeconds:F3} s, {m.PrefillThroughput:F1} token/s");
        b.AppendLine($"decode           {m.DecodeSeconds:F3} s, {m.DecodeThroughput:F2} token/s");
        b.AppendLine($"total            {m.TotalThroughput:F2} token/s (median of {runs.Count}: {string.Join(", ", runs.Select(r => r.TotalThroughput.ToString("F2")))})");
        b.AppendLine($"peak (accounted) device {ByteSize.Format(m.AccountedPeak.Device)}, cpu {ByteSize.Format(m.AccountedPeak.Cpu)}, disk {ByteSize.Format(m.AccountedPeak.Disk)}");
        if (m.DevicePeakBytes is { } device) b.AppendLine($"peak (device)    {ByteSize.Format(device)} in use as the CUDA driver reports it");
        b.AppendLine($"peak (predicted) device {ByteSize.Format((long)setup.PredictedGpuPeakBytes)} of tensors by the planner's memory model");
        if (setup.PredictedDevicePeakBytes is { } predicted)
            b.AppendLine($"                 {ByteSize.Format((long)predicted)} as the device will report it: with the allocator's reserve ({DevicePeak.AllocatorReserveShare * 100:0}% of the buffers among the tensors) and the CUDA context");
        if (setup.Reserve.Bytes > 0)
            b.AppendLine($"device reserve   {ByteSize.Format(setup.Reserve.Bytes)} of the GPU budget: CUDA context {ByteSize.Format(setup.Reserve.ContextBytes)} at start, {ByteSize.Format(setup.Reserve.AllocatorAllowanceBytes)} for what lies outside the allocator (its reserve for the buffers is planned with the policy)");
        if (setup.AllocatorCapBytes is { } cap)
            b.AppendLine($"allocator cap    {ByteSize.Format(cap)}: libtorch's allocator gives back cached blocks before it reserves more");
        if (setup.Engine.Graphs is { } g)
            b.AppendLine($"cuda graphs      {g.Captures} captured, {g.Replays} replays, {g.Uncaptured} layers run uncaptured{(g.Failure is { } f ? $"; captures stopped: {f}" : "")}");
        if (setup.Search is { } s)
            b.AppendLine($"planner          predicted {s.Estimate.ThroughputTokensPerSecond:F2} token/s; searched in {s.SearchTime.TotalMilliseconds:F1} ms");
        return b.ToString().TrimEnd();
    }

    /// <summary>The share of the weights' stored bytes on each tier, as the runtime placed them under the policy in force.</summary>
    private static TierFractions Realized(RunSetup setup)
    {
        var placed = setup.Engine.WeightPlan.Weights;
        double total = placed.Device + placed.Cpu + placed.Disk;
        return new TierFractions(placed.Device / total, placed.Cpu / total, placed.Disk / total);
    }

    public static string Json(RunSetup setup, BenchRun m, IReadOnlyList<BenchRun> runs)
    {
        var p = setup.Policy;
        object Fractions(TierFractions f) => new { gpu = f.Gpu, cpu = f.Cpu, disk = f.Disk };
        var result = new Dictionary<string, object?>
        {
            ["model"] = setup.Config.Name,
            ["engine"] = setup.ThroughActors ? "actors" : "direct",
            ["prompt_len"] = m.PromptLength,
            ["gen_len"] = m.GenerationLength,
            ["block_size"] = m.BlockSize,
            ["prefill_latency_s"] = m.PrefillSeconds,
            ["prefill_throughput"] = m.PrefillThroughput,
            ["decode_latency_s"] = m.DecodeSeconds,
            ["decode_throughput"] = m.DecodeThroughput,
            ["total_throughput"] = m.TotalThroughput,
            ["total_throughput_runs"] = runs.Select(r => r.TotalThroughput).ToArray(),
            ["peak_memory_bytes"] = new { gpu = m.AccountedPeak.Device, cpu = m.AccountedPeak.Cpu, disk = m.AccountedPeak.Disk },
            ["device_reported_peak_bytes"] = m.DevicePeakBytes,
            ["predicted_gpu_peak_bytes"] = (long)setup.PredictedGpuPeakBytes,
            ["predicted_device_peak_bytes"] = setup.PredictedDevicePeakBytes is { } device ? (long)device : null,
            ["device_reserve_bytes"] = new { context = setup.Reserve.ContextBytes, allocator_allowance = setup.Reserve.AllocatorAllowanceBytes },
            ["allocator_cap_bytes"] = setup.AllocatorCapBytes,
            ["weights_load_s"] = setup.LoadTime.TotalSeconds,
            ["policy"] = new
            {
                gpu_batch_size = p.GpuBatchSize, num_gpu_batches = p.NumGpuBatches, weights = Fractions(p.Weights),
                cache = Fractions(p.Cache), activations = Fractions(p.Activations), cpu_attention = p.CpuAttention, compress_cache = p.CompressCache,
                compress_weight = p.CompressWeights, weight_placement = p.SpreadWeights ? "spread" : "flexgen",
            },
            ["realized_weights"] = Fractions(Realized(setup)),
            ["predicted_throughput"] = setup.Search?.Estimate.ThroughputTokensPerSecond,
        };
        if (setup.Engine.Graphs is { } g)
            result["cuda_graphs"] = new { captured = g.Captures, replayed = g.Replays, uncaptured = g.Uncaptured, failure = g.Failure };
        // Through the actors the block is the node planner's for these lengths: its policy and prediction beside the search's.
        if (setup.ThroughActors && setup.PlannedFor(m.PromptLength, m.GenerationLength) is { } planned)
        {
            result["node_planner_policy"] = planned.ToString();
            result["node_planner_block_size"] = planned.BlockSize;
            result["node_planner_predicted_throughput"] = planned.PredictedTokensPerSecond;
        }
        return JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true });
    }
}
