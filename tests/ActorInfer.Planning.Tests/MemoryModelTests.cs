using static ActorInfer.Planning.Tests.TestData;

namespace ActorInfer.Planning.Tests;

/// <summary>
/// The GPU peak against what the runtime holds, part by part: FlexGen's published OPT-30B policy on its T4, the
/// compressed cache's working copies, and budgets that must still refuse.
/// </summary>
public class MemoryModelTests
{
    private const double Tolerance = 1e-9;
    private static readonly ModelSpec Opt30B = OptModels.Get("opt-30b");
    private static readonly Workload FlexGenBenchmark = new(promptLength: 512, generationLength: 32);
    private static readonly MemoryBudget T4 = new(16_000_000_000, 208_000_000_000, 1_500_000_000_000);

    /// <summary>FlexGen's OPT-30B run on its T4: 48 x 3, weights 20/80, cache and activations on the CPU, CPU attention.</summary>
    private static Policy FlexGenT4Policy(double weightsOnGpu) =>
        new(48, 3, new TierFractions(weightsOnGpu, 1 - weightsOnGpu, 0), TierFractions.AllCpu, TierFractions.AllCpu) { CpuAttention = true };

    /// <summary>
    /// The share of OPT-30B's weights that FlexGen's "20% on the GPU" puts there. FlexGen places whole tensors of the
    /// attention and of the MLP (separate layers in its schedule) by where each tensor's midpoint falls, the tiers in
    /// the order disk, CPU, GPU (<c>init_weight_list</c>): with 0/80/20 only tensors whose midpoint lies past 80% go to
    /// the GPU. In the attention (Q, K, V, out, each h² + h, then the LayerNorm's 2h) that is the output projection and
    /// the LayerNorm; in the MLP (fc1 4h² + 4h, fc2 4h² + h, LayerNorm 2h) fc2's bias and the LayerNorm. The embeddings'
    /// midpoints lie near 50%: CPU.
    /// </summary>
    private static double FlexGenRealizedGpuShare()
    {
        long h = Opt30B.HiddenSize;
        var gpuParametersPerLayer = h * h + h + 2 * h + h + 2 * h;
        return (double)gpuParametersPerLayer * Opt30B.NumLayers * Opt30B.BytesPerElement / Opt30B.TotalWeightBytes;
    }

    private static double Part(IReadOnlyList<MemoryPartBytes> parts, string name) =>
        parts.Where(p => p.Name == name).Sum(p => p.Bytes);

    [Fact]
    public void FlexGen_t4_policy_fits_16_GB_as_FlexGen_places_it_and_predicts_within_25_percent_of_its_measurement()
    {
        var share = FlexGenRealizedGpuShare();
        Assert.InRange(share, 0.082, 0.083);
        var estimate = CostModel.Evaluate(Opt30B, FlexGenBenchmark, FlexGenT4Policy(share), HardwareProfiles.T4FlexGen);
        Assert.True(T4.Fits(estimate.PeakMemory), $"GPU peak {estimate.PeakMemory.Gpu / 1e9:0.00} GB");
        Assert.InRange(estimate.PeakMemory.Gpu, 11.6e9, 12.0e9);
        // FlexGen measured 7.32 token/s.
        Assert.InRange(estimate.ThroughputTokensPerSecond, 7.32 * 0.75, 7.32 * 1.25);
        // Decoding waits on CPU attention, not on the weights' loads: the literal 20% predicts the same throughput.
        var literal = CostModel.Evaluate(Opt30B, FlexGenBenchmark, FlexGenT4Policy(0.2), HardwareProfiles.T4FlexGen);
        Assert.Equal(literal.ThroughputTokensPerSecond, estimate.ThroughputTokensPerSecond, 1e-6);
    }

    [Fact]
    public void FlexGen_t4_policy_peak_is_the_prefill_of_one_batch_with_its_neighbours_in_flight()
    {
        var estimate = CostModel.Evaluate(Opt30B, FlexGenBenchmark, FlexGenT4Policy(0.2), HardwareProfiles.T4FlexGen);
        Assert.Equal(Phase.Prefill, estimate.GpuPeakPhase);
        var parts = estimate.GpuPeakParts;
        Assert.Equal(estimate.PeakMemory.Gpu, parts.Sum(p => p.Bytes), 1e-3);
        // One GPU batch's hidden state, 2 bytes x 48 x 512 x 7168 = 352.3 MB (u below).
        const double u = 2.0 * 48 * 512 * 7168;
        Assert.Equal(0.2 * Opt30B.TotalWeightBytes, Part(parts, "weights"), 1e-3);
        Assert.Equal(2 * 0.8 * Opt30B.LayerWeightBytes, Part(parts, "weight_buffers"), 1e-3);
        // The next batch's input, this batch's input, the previous batch's output until stored.
        Assert.Equal(3 * u, Part(parts, "hidden_in_flight"), 1e-3);
        // Keys and values (as wide as the hidden state in OPT) of this batch and the previous one until stored.
        Assert.Equal(4 * u, Part(parts, "cache_in_flight"), 1e-3);
        // The MLP stage: attended state, FFN intermediate (4h), output: 6u. FlexGen's attention would add its two copies
        // of the scores, 2 x 2 bytes x 48 x 56 x 512² = 8u, which the fused kernel never holds.
        Assert.Equal(6 * u, Part(parts, "compute"), 1e-3);
        Assert.InRange(estimate.PeakMemory.Gpu, 18.5e9, 18.6e9);
    }

    [Fact]
    public void Prefill_computation_grows_linearly_with_the_prompt()
    {
        double Compute(int prompt) => Part(CostModel.Evaluate(Opt30B, new Workload(prompt, 32), FlexGenT4Policy(0.2), HardwareProfiles.T4FlexGen).PrefillGpuParts, "compute");
        Assert.Equal(2 * Compute(512), Compute(1024), 1e-3);
    }

    [Fact]
    public void A_policy_too_big_for_the_budget_is_still_refused()
    {
        var allWeights = CostModel.Evaluate(Opt30B, FlexGenBenchmark, FlexGenT4Policy(1), HardwareProfiles.T4FlexGen);
        Assert.False(T4.Fits(allWeights.PeakMemory));
        Assert.False(T4.Fits(CostModel.Evaluate(Opt30B, FlexGenBenchmark, FlexGenT4Policy(0.2), HardwareProfiles.T4FlexGen).PeakMemory));
        // Two layers of weights in flight alone (2 x 1.23 GB) overflow 2 GB, whatever the placement.
        var options = new SearchOptions { GpuBatchSize = 48, NumGpuBatches = 3 };
        Assert.Throws<NoFeasiblePolicyException>(() =>
            PolicySearch.Find(Opt30B, FlexGenBenchmark, HardwareProfiles.T4FlexGen, new MemoryBudget(2_000_000_000, 208_000_000_000, 0), options));
    }

    [Fact]
    public void A_compressed_cache_on_the_gpu_adds_its_expanded_working_caches_even_with_cpu_attention()
    {
        // Tiny model, b = 2, s + n = 8, h = 8: one batch's expanded cache 2·2·8·8·2 = 512 bytes; the batch computing
        // and the next hold one each; expanding keys or values splits their codes in two byte tensors, b·(s+n)·h = 128.
        var work = new Workload(promptLength: 4, generationLength: 4);
        Policy Compressed(TierFractions cache) => Place(Gpu, cache, Gpu) with { CompressCache = true };
        var onGpu = CostModel.Evaluate(TinyModel, work, Compressed(new TierFractions(0.5, 0.5, 0)), RoundProfile);
        Assert.Equal(2 * 512 + 128, Part(onGpu.DecodeGpuParts, "cache_expansion"), Tolerance);
        var offGpu = CostModel.Evaluate(TinyModel, work, Compressed(Cpu), RoundProfile);
        Assert.Equal(0, Part(offGpu.DecodeGpuParts, "cache_expansion"));
        // Its expansion is timed too, for the GPU-resident half: ten passes over 2·2·8·6·2 expanded bytes at 1e12 B/s.
        var plain = CostModel.Evaluate(TinyModel, work, Compressed(new TierFractions(0.5, 0.5, 0)) with { CompressCache = false }, RoundProfile);
        Assert.Equal(plain.Decode.GpuComputeSeconds + 0.5 * 10 * 384 / 1e12, onGpu.Decode.GpuComputeSeconds, 1e-15);
    }

    [Fact]
    public void The_search_with_a_compressed_cache_reports_what_the_policy_it_found_evaluates_to()
    {
        var model = OptModels.Get("opt-6.7b");
        var budget = new MemoryBudget(12L << 30, 100L << 30, 0);
        var options = new SearchOptions { CompressCache = true, CpuAttention = true };
        var result = PolicySearch.Find(model, FlexGenBenchmark, HardwareProfiles.T4FlexGen, budget, options);
        var again = CostModel.Evaluate(model, FlexGenBenchmark, result.Policy, HardwareProfiles.T4FlexGen);
        Assert.Equal(again.PeakMemory.Gpu, result.Estimate.PeakMemory.Gpu, 1e-3);
        Assert.Equal(again.ThroughputTokensPerSecond, result.Estimate.ThroughputTokensPerSecond, 1e-9);
        Assert.True(budget.Fits(again.PeakMemory));
        Assert.Equal(result.Policy.Cache.Gpu > 0, Part(again.DecodeGpuParts, "cache_expansion") > 0);
    }
}
