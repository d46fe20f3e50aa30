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
    /// The bytes of OPT-30B's weights that FlexGen's "20% on the GPU" puts there. FlexGen places whole tensors of the
    /// attention and of the MLP (separate layers in its schedule) by where each tensor's midpoint falls, the tiers in
    /// the order disk, CPU, GPU (<c>init_weight_list</c>): with 0/80/20 only tensors whose midpoint lies past 80% go to
    /// the GPU. In the attention (Q, K, V, out, each h² + h, then the LayerNorm's 2h) that is the output projection with
    /// its bias and the LayerNorm; in the MLP (fc1 4h² + 4h, fc2 4h² + h, LayerNorm 2h) fc2's bias and the LayerNorm;
    /// in the input layer (tokens 50272 h, positions 2050 h) the positions, whose midpoint is at 98%. The output layer
    /// (its LayerNorm, then its copy of the tokens) keeps all of it on the CPU.
    /// </summary>
    private static double FlexGenRealizedGpuBytes()
    {
        long h = Opt30B.HiddenSize;
        var perLayer = h * h + h + 2 * h + h + 2 * h;
        return (perLayer * Opt30B.NumLayers + 2050 * h) * 2.0;
    }

    private static double Part(IReadOnlyList<MemoryPartBytes> parts, string name) =>
        parts.Where(p => p.Name == name).Sum(p => p.Bytes);

    [Fact]
    public void FlexGen_t4_policy_fits_16_GB_as_FlexGen_places_it_and_predicts_within_25_percent_of_its_measurement()
    {
        var estimate = CostModel.Evaluate(Opt30B, FlexGenBenchmark, FlexGenT4Policy(0.2), HardwareProfiles.T4FlexGen);
        Assert.Equal(FlexGenRealizedGpuBytes(), estimate.RealizedWeights.Model.Gpu);
        // 4.97 GB: 8.3% of the model's 59.95 GB, 8.2% of the 60.67 GB placed (the output layer's copy of the tokens counted).
        Assert.InRange(estimate.RealizedWeights.Model.Gpu / Opt30B.TotalWeightBytes, 0.0825, 0.0830);
        Assert.InRange(estimate.RealizedWeights.Fractions.Gpu, 0.0815, 0.0820);
        Assert.True(T4.Fits(estimate.PeakMemory), $"GPU peak {estimate.PeakMemory.Gpu / 1e9:0.00} GB");
        Assert.InRange(estimate.PeakMemory.Gpu, 11.7e9, 11.9e9);
        // FlexGen measured 7.32 token/s.
        Assert.InRange(estimate.ThroughputTokensPerSecond, 7.32 * 0.75, 7.32 * 1.25);
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
        long h = Opt30B.HiddenSize;
        Assert.Equal(FlexGenRealizedGpuBytes(), Part(parts, "weights"), 1e-3);
        // This layer's and the next layer's off-GPU weights: all but the output projection and the vectors after it,
        // 11 h² + 7 h of each layer's 12 h² + 13 h.
        Assert.Equal(2 * (11 * h * h + 7 * h) * 2.0, Part(parts, "weight_buffers"), 1e-3);
        // The next batch's input, this batch's input, the previous batch's output until stored.
        Assert.Equal(3 * u, Part(parts, "hidden_in_flight"), 1e-3);
        // Keys and values (as wide as the hidden state in OPT) of this batch and the previous one until stored.
        Assert.Equal(4 * u, Part(parts, "cache_in_flight"), 1e-3);
        // The MLP stage: attended state, FFN intermediate (4h), output: 6u. FlexGen's attention would add its two copies
        // of the scores, 2 x 2 bytes x 48 x 56 x 512² = 8u, which the fused kernel never holds.
        Assert.Equal(6 * u, Part(parts, "compute"), 1e-3);
        Assert.InRange(estimate.PeakMemory.Gpu, 11.7e9, 11.9e9);
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
        // 30% on the GPU passes fc2's midpoint (75%) too: 5 h² of each layer's 12 h², 41% of the weights, 24.7 GB.
        var thirty = CostModel.Evaluate(Opt30B, FlexGenBenchmark, FlexGenT4Policy(0.3), HardwareProfiles.T4FlexGen);
        Assert.InRange(thirty.RealizedWeights.Fractions.Gpu, 0.40, 0.41);
        Assert.False(T4.Fits(thirty.PeakMemory));
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

    /// <summary>
    /// A compressed cache attended on the CPU holds two expanded working caches there, unless the runtime reads its codes:
    /// then the CPU's decoding figure is two batches' expanded caches less, and nothing else changes.
    /// </summary>
    [Fact]
    public void A_compressed_cache_read_from_its_codes_on_the_cpu_holds_no_working_copies_there()
    {
        // Tiny model, b = 2, s + n = 8, h = 8: one batch's expanded cache 2·2·8·8·2 = 512 bytes.
        var work = new Workload(promptLength: 4, generationLength: 4);
        var policy = Place(Gpu, Cpu, Gpu) with { CompressCache = true, CpuAttention = true };
        var expanded = CostModel.Evaluate(TinyModel, work, policy, RoundProfile);
        var codes = CostModel.Evaluate(TinyModel with { CpuAttendsCacheCodes = true }, work, policy, RoundProfile);
        Assert.Equal(expanded.DecodeMemory.Cpu - 2 * 512, codes.DecodeMemory.Cpu, Tolerance);
        Assert.Equal(expanded.DecodeMemory.Gpu, codes.DecodeMemory.Gpu, Tolerance);
        Assert.Equal(expanded.PrefillMemory, codes.PrefillMemory);
        // Attended on the GPU, the flag changes nothing.
        var onGpu = policy with { CpuAttention = false };
        Assert.Equal(CostModel.Evaluate(TinyModel, work, onGpu, RoundProfile).DecodeMemory,
            CostModel.Evaluate(TinyModel with { CpuAttendsCacheCodes = true }, work, onGpu, RoundProfile).DecodeMemory);
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
