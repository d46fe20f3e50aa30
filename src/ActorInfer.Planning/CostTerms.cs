using static ActorInfer.Planning.Placement;

namespace ActorInfer.Planning;

/// <summary>The policy's choices that are not placement shares; with the batch geometry they fix every coefficient.</summary>
public sealed record PolicyShape(int GpuBatchSize, int NumGpuBatches, bool CpuAttention, bool CompressWeights, bool CompressCache)
{
    public static PolicyShape Of(Policy policy) =>
        new(policy.GpuBatchSize, policy.NumGpuBatches, policy.CpuAttention, policy.CompressWeights, policy.CompressCache)
        {
            CacheOnGpu = policy.Cache.Gpu > 0,
            SpreadWeights = policy.SpreadWeights,
        };

    /// <summary>The weights are placed over the model as a whole (<see cref="Policy.SpreadWeights"/>).</summary>
    public bool SpreadWeights { get; init; }

    /// <summary>
    /// Whether some (layer, GPU batch) cache may live on the GPU. With a compressed cache and CPU attention, a cache on
    /// the GPU is expanded there for attention: whole working caches, however small the share, a fixed cost that a
    /// linear term in the share cannot express, so the search tries the geometry with and without a GPU cache.
    /// </summary>
    public bool CacheOnGpu { get; init; } = true;

    public int BlockSize => GpuBatchSize * NumGpuBatches;
}

/// <summary>Seconds one layer spends on each link and processor in one phase, for the whole block.</summary>
public sealed record PhaseTimeTerms(
    LinearExpression CpuToGpu, LinearExpression GpuToCpu, LinearExpression DiskToCpu, LinearExpression CpuToDisk,
    LinearExpression GpuCompute, LinearExpression CpuCompute)
{
    /// <summary>
    /// The three streams of the overlapped schedule. Loads go disk -> CPU -> GPU on one stream, stores GPU -> CPU -> disk
    /// on another, compute (GPU, and CPU attention which waits on and feeds the GPU) on a third.
    /// </summary>
    public LinearExpression LoadStream => DiskToCpu + CpuToGpu;
    public LinearExpression StoreStream => GpuToCpu + CpuToDisk;
    /// <summary>
    /// GPU compute and CPU attention add rather than overlap: the runtime attends on the CPU on the same host thread
    /// that issues the GPU work (<c>BlockStep.CpuAttention</c>), so for each (layer, GPU batch) the GPU's Q, K, V go
    /// down, the host attends, the context comes back, and only then is the rest of the layer and the next batch
    /// issued. Only the copies on the other two streams overlap this sum.
    /// </summary>
    public LinearExpression ComputeStream => GpuCompute + CpuCompute;
}

/// <summary>One named part of a tier's peak (what it holds), as bytes linear in the shares.</summary>
/// <param name="Home">A home that stays allocated for the whole phase (weights, cache, hidden states on the GPU), not a
/// buffer taken and given back every (layer, GPU batch).</param>
public sealed record MemoryPart(string Name, LinearExpression Bytes, bool Home = false);

/// <summary>Peak bytes each tier holds during one phase; the GPU's figure with its parts.</summary>
public sealed record PhaseMemoryTerms(LinearExpression Gpu, LinearExpression Cpu, LinearExpression Disk)
{
    /// <summary>The parts whose sum is <see cref="Gpu"/>.</summary>
    public IReadOnlyList<MemoryPart> GpuParts { get; private init; } = [];

    public static PhaseMemoryTerms Of(IReadOnlyList<MemoryPart> gpuParts, LinearExpression cpu, LinearExpression disk) =>
        new(gpuParts.Aggregate(LinearExpression.Zero, (sum, part) => sum + part.Bytes), cpu, disk) { GpuParts = gpuParts };

    public LinearExpression For(Tier tier) => tier switch
    {
        Tier.Gpu => Gpu,
        Tier.Cpu => Cpu,
        _ => Disk,
    };

    /// <summary>
    /// A tier's bytes as a budget counts them (<see cref="MemoryBudget.GpuBufferReserve"/>): the GPU's buffers with the
    /// allocator's reserve of <paramref name="gpuBufferReserve"/> of them on top, the homes and the other tiers as they are.
    /// </summary>
    public LinearExpression Charged(Tier tier, double gpuBufferReserve)
    {
        if (tier != Tier.Gpu || gpuBufferReserve == 0 || GpuParts.Count == 0) return For(tier);
        var charged = LinearExpression.Zero;
        foreach (var part in GpuParts)
            charged += part.Home ? part.Bytes : (1 + gpuBufferReserve) * part.Bytes;
        return charged;
    }
}

public enum Tier { Gpu, Cpu, Disk }

public enum Phase { Prefill, Decode }

/// <summary>
/// Every term of the cost model as a linear expression in the nine placement shares, for one model, workload,
/// hardware and batch geometry. docs/planner.md derives each term.
/// </summary>
public sealed partial record CostTerms(PhaseTimeTerms Prefill, PhaseTimeTerms Decode, PhaseMemoryTerms PrefillMemory, PhaseMemoryTerms DecodeMemory)
{
    /// <summary>4-bit values with a float16 minimum and scale per group of 64: (64·4/8 + 2·2) bytes per 64 elements.</summary>
    public const double CompressedBytesPerElement = (64 * 4 / 8.0 + 4) / 64;

    /// <summary>
    /// Bytes of GPU memory traffic per byte of expanded cache when a compressed cache is expanded: the codes are split
    /// into halves, widened to the model's dtype, scaled, shifted and copied into the working cache (about ten passes
    /// over an expanded-size tensor). docs/planner.md gives the count.
    /// </summary>
    public const double ExpansionTrafficPerByte = 10;

    /// <summary>
    /// Bytes of GPU memory traffic per byte of expanded (float16) weight when a compressed layer is expanded before use:
    /// per element, the nibbles split into two byte tensors (read 0.5, write 0.5 bytes each), each widened into its half
    /// of the layer (read 0.5, write 1), then one pass scaling and one shifting it (read 2, write 2 each): 13 bytes, 6.5
    /// per expanded byte. A layer is expanded once per step, whatever the number of GPU batches.
    /// </summary>
    public const double WeightExpansionTrafficPerByte = 6.5;

    public PhaseTimeTerms Time(Phase phase) => phase == Phase.Prefill ? Prefill : Decode;
    public PhaseMemoryTerms Memory(Phase phase) => phase == Phase.Prefill ? PrefillMemory : DecodeMemory;

    /// <param name="realized">
    /// The weights as a policy's fractions place them (<see cref="ModelSpec.RealizeWeights"/>): the weight terms are then
    /// constants, those bytes. Without it (the search's linear program) they are linear in the weight shares.
    /// </param>
    public static CostTerms Build(ModelSpec model, Workload workload, PolicyShape shape, HardwareProfile hardware, RealizedWeights? realized = null)
    {
        var sizes = new Sizes(model, workload, shape, realized);
        return new CostTerms(
            PrefillTimes(sizes, shape, hardware), DecodeTimes(sizes, shape, hardware),
            PrefillMemoryTerms(sizes, shape), DecodeMemoryTerms(sizes, shape));
    }

    /// <summary>Byte and FLOP counts of one layer for the block (upper-case B: block size) or one GPU batch.</summary>
    private sealed class Sizes
    {
        private readonly RealizedWeights? realized;
        private readonly double weightScale;

        public Sizes(ModelSpec model, Workload workload, PolicyShape shape, RealizedWeights? realized)
        {
            this.realized = realized;
            double element = model.BytesPerElement, hidden = model.HiddenSize, block = shape.BlockSize, batch = shape.GpuBatchSize;
            double prompt = workload.PromptLength, total = workload.TotalLength, context = workload.MeanDecodeContext;
            weightScale = shape.CompressWeights ? CompressedBytesPerElement / element : 1;
            var cacheScale = shape.CompressCache ? CompressedBytesPerElement / element : 1;
            // The cache holds the key/value heads only: narrower than the hidden state under grouped-query attention.
            double kvWidth = model.KeyValueWidth;

            HiddenSize = model.HiddenSize;
            CpuAttendsCacheCodes = model.CpuAttendsCacheCodes;
            LayerWeights = model.LayerWeightBytes * weightScale;
            UncompressedLayerWeights = model.LayerWeightBytes;
            AllWeights = model.PlacedWeightBytes * weightScale;
            AllCache = 2 * element * kvWidth * total * block * model.NumLayers * cacheScale;
            PromptHidden = element * hidden * prompt * block;
            TokenHidden = element * hidden * block;
            PromptCacheWrite = 2 * element * kvWidth * prompt * block * cacheScale;
            TokenCacheWrite = 2 * element * kvWidth * block * cacheScale;
            DecodeAttentionReads = 2 * element * kvWidth * context * block;
            MeanCacheRead = DecodeAttentionReads * cacheScale;
            TokenQuery = element * hidden * block;
            BatchPromptHidden = element * hidden * prompt * batch;
            BatchTokenHidden = element * hidden * batch;
            BatchPromptCache = 2 * element * kvWidth * prompt * batch * cacheScale;
            BatchFullCache = 2 * element * kvWidth * total * batch * cacheScale;
            BatchFullCacheExpanded = shape.CompressCache ? 2 * element * kvWidth * total * batch : 0;
            MeanCacheExpansionTraffic = shape.CompressCache ? ExpansionTrafficPerByte * 2 * element * kvWidth * context * block : 0;
            WeightExpansionTraffic = shape.CompressWeights ? WeightExpansionTrafficPerByte * model.LayerWeightBytes : 0;

            WeightReadsPerLayer = model.LayerWeightBytes * shape.NumGpuBatches;
            PrefillMatmulFlops = block * prompt * model.LayerMatmulFlopsPerToken;
            PrefillAttentionFlops = 4 * block * prompt * prompt * hidden;
            DecodeMatmulFlops = block * model.LayerMatmulFlopsPerToken;
            DecodeAttentionFlops = 4 * block * context * hidden;

            double heads = model.NumHeads;
            PrefillCompute = element * batch * prompt * ComputeElementsPerToken(model, scores: 0)
                             + (shape.CompressCache ? CompressionTemporariesPerElement * element * batch * Math.Min(CompressionChunkTokens, prompt) * kvWidth : 0);
            DecodeComputeWithScores = element * batch * ComputeElementsPerToken(model, scores: 2 * heads * total);
            DecodeComputeWithoutScores = element * batch * ComputeElementsPerToken(model, scores: 0);
            // Each of keys and values is expanded in turn; its codes split into two byte tensors, as many bytes as elements.
            CacheExpansionTemporaries = shape.CompressCache ? batch * total * kvWidth : 0;
            CpuAttentionScratch = 4.0 * heads * total * batch;
        }

        /// <summary>One decoder layer's weight bytes on the given tiers (stored, compressed where the policy compresses).</summary>
        public LinearExpression LayerWeightsOn(params Tier[] tiers) => realized is { } placed
            ? LinearExpression.Of(weightScale * tiers.Sum(placed.Layer.For))
            : LinearExpression.Of(LayerWeights, [.. tiers.Select(WeightShare)]);

        /// <summary>
        /// The off-GPU weight bytes of the decoder layer with the most (stored): what a buffer for one layer's loaded weights
        /// holds. With the weights spread over the model, layers differ; otherwise it is every layer's.
        /// </summary>
        public LinearExpression LargestLayerWeightsOffGpu => realized is { } placed
            ? LinearExpression.Of(weightScale * placed.LargestOffGpuLayer)
            : LayerWeightsOn(Tier.Cpu, Tier.Disk);

        /// <summary>The disk-resident weight bytes of the decoder layer with the most (stored).</summary>
        public LinearExpression LargestLayerWeightsOnDisk => realized is { } placed
            ? LinearExpression.Of(weightScale * placed.LargestDiskLayer)
            : LayerWeightsOn(Tier.Disk);

        /// <summary>The model's weight bytes on one tier (stored).</summary>
        public LinearExpression AllWeightsOn(Tier tier) => realized is { } placed
            ? LinearExpression.Of(weightScale * placed.Model.For(tier))
            : LinearExpression.Of(AllWeights, WeightShare(tier));

        private static Placement WeightShare(Tier tier) => tier switch
        {
            Tier.Gpu => WeightsGpu,
            Tier.Cpu => WeightsCpu,
            _ => WeightsDisk,
        };

        public int HiddenSize { get; }
        /// <summary>A compressed cache attended on the CPU is read from its codes: no working copy there (<see cref="ModelSpec.CpuAttendsCacheCodes"/>).</summary>
        public bool CpuAttendsCacheCodes { get; }
        public double LayerWeights { get; }
        public double UncompressedLayerWeights { get; }
        public double AllWeights { get; }
        public double AllCache { get; }
        public double PromptHidden { get; }
        public double TokenHidden { get; }
        public double PromptCacheWrite { get; }
        public double TokenCacheWrite { get; }
        public double MeanCacheRead { get; }
        public double TokenQuery { get; }
        public double BatchPromptHidden { get; }
        public double BatchTokenHidden { get; }
        public double BatchPromptCache { get; }
        public double BatchFullCache { get; }
        /// <summary>A compressed batch cache expanded to the model's dtype for attention (zero when uncompressed).</summary>
        public double BatchFullCacheExpanded { get; }
        /// <summary>GPU memory traffic of expanding the block's compressed cache each decoding step (zero when uncompressed).</summary>
        public double MeanCacheExpansionTraffic { get; }
        /// <summary>GPU memory traffic of expanding a compressed layer's weights, once per step (zero when uncompressed).</summary>
        public double WeightExpansionTraffic { get; }
        /// <summary>Bytes of GPU memory traffic for weights: every GPU batch reads the whole (float16) layer.</summary>
        public double WeightReadsPerLayer { get; }
        public double PrefillMatmulFlops { get; }
        public double PrefillAttentionFlops { get; }
        public double DecodeMatmulFlops { get; }
        public double DecodeAttentionFlops { get; }

        /// <summary>
        /// What a decoding step's attention on the GPU reads of the cache (expanded where compressed): the fused decoding
        /// kernel reads it at the memory bound (docs/perf/h100-fused-kernels/), so it is priced at the GPU's memory bandwidth,
        /// not at a batched product's rate.
        /// </summary>
        public double DecodeAttentionReads { get; }
        /// <summary>One GPU batch's computation in the prefill (<see cref="ComputeElementsPerToken"/>), with the cache's compression.</summary>
        public double PrefillCompute { get; }
        public double DecodeComputeWithScores { get; }
        public double DecodeComputeWithoutScores { get; }
        /// <summary>What expanding one batch's compressed keys or values holds beside the working cache (zero when uncompressed).</summary>
        public double CacheExpansionTemporaries { get; }
        public double CpuAttentionScratch { get; }
    }

    private static PhaseTimeTerms PrefillTimes(Sizes size, PolicyShape shape, HardwareProfile hw) => new(
        CpuToGpu: size.LayerWeightsOn(Tier.Cpu, Tier.Disk) / hw.CpuToGpuBytesPerSecond
                  + LinearExpression.Of(size.PromptHidden, ActivationsCpu, ActivationsDisk) / hw.CpuToGpuBytesPerSecond,
        GpuToCpu: LinearExpression.Of(size.PromptCacheWrite, CacheCpu, CacheDisk) / hw.GpuToCpuCacheBytesPerSecond
                  + LinearExpression.Of(size.PromptHidden, ActivationsCpu, ActivationsDisk) / hw.GpuToCpuBytesPerSecond,
        DiskToCpu: size.LayerWeightsOn(Tier.Disk) / hw.DiskToCpuBytesPerSecond
                   + LinearExpression.Of(size.PromptHidden, ActivationsDisk) / hw.DiskToCpuBytesPerSecond,
        CpuToDisk: LinearExpression.Of(size.PromptCacheWrite, CacheDisk) / hw.CpuToDiskCacheBytesPerSecond
                   + LinearExpression.Of(size.PromptHidden, ActivationsDisk) / hw.CpuToDiskBytesPerSecond,
        GpuCompute: LinearExpression.Of(Math.Max(size.PrefillMatmulFlops / hw.GpuMatmulPrefillFlops, size.WeightReadsPerLayer / hw.GpuMemoryBytesPerSecond)
                                        + size.PrefillAttentionFlops / hw.GpuBatchedMatmulPrefillFlops
                                        + shape.NumGpuBatches * hw.GpuBatchOverheadSeconds
                                        + size.WeightExpansionTraffic / hw.GpuMemoryBytesPerSecond),
        CpuCompute: LinearExpression.Zero);

    /// <summary>
    /// A decoding layer's dense products over the block. With the token count the profile's decode rate was measured
    /// at, each GPU batch takes the longest of: its arithmetic at the prefill rate, the measured time (the weights'
    /// read, which hardly depends on the batch), and the weights' read at the memory bandwidth. Without it, FlexGen's
    /// rate times the block's arithmetic, bounded below by the weights' reads.
    /// </summary>
    private static double DecodeMatmulSeconds(Sizes size, PolicyShape shape, HardwareProfile hw)
    {
        var weightReads = size.WeightReadsPerLayer / hw.GpuMemoryBytesPerSecond;
        if (hw.GpuMatmulDecodeTokens <= 0) return Math.Max(size.DecodeMatmulFlops / hw.GpuMatmulDecodeFlops, weightReads);
        var perToken = size.DecodeMatmulFlops / shape.BlockSize;
        var perBatch = Math.Max(shape.GpuBatchSize * perToken / hw.GpuMatmulPrefillFlops, hw.GpuMatmulDecodeTokens * perToken / hw.GpuMatmulDecodeFlops);
        return Math.Max(shape.NumGpuBatches * perBatch, weightReads);
    }

    private static PhaseTimeTerms DecodeTimes(Sizes size, PolicyShape shape, HardwareProfile hw)
    {
        var weightsIn = size.LayerWeightsOn(Tier.Cpu, Tier.Disk) / hw.CpuToGpuBytesPerSecond;
        var hiddenIn = LinearExpression.Of(size.TokenHidden, ActivationsCpu, ActivationsDisk) / hw.CpuToGpuBytesPerSecond;
        var hiddenOut = LinearExpression.Of(size.TokenHidden, ActivationsCpu, ActivationsDisk) / hw.GpuToCpuBytesPerSecond;
        // The per-position overhead was measured where a GPU batch's cache comes from the CPU each step (an offloaded
        // OPT-30B's decoding trace); with the cache on the GPU a decoding layer costs what its products and its attention's
        // reads price: all on the GPU, OPT-6.7B at 32, 64 and 80 sequences on an H200 and 32 and 64 on an H100, predicted at
        // 0.91 to 1.03 of the measured throughput so, at 0.50 to 0.67 with it (docs/perf/h200-block-sizes/). So it is
        // charged in proportion to the cache's share off the GPU.
        var matmul = LinearExpression.Of(DecodeMatmulSeconds(size, shape, hw) + size.WeightExpansionTraffic / hw.GpuMemoryBytesPerSecond)
                     + LinearExpression.Of(shape.NumGpuBatches * hw.GpuBatchOverheadSeconds, CacheCpu, CacheDisk);
        var diskToCpu = size.LayerWeightsOn(Tier.Disk) / hw.DiskToCpuBytesPerSecond
                        + LinearExpression.Of(size.TokenHidden, ActivationsDisk) / hw.DiskToCpuBytesPerSecond
                        + LinearExpression.Of(size.MeanCacheRead, CacheDisk) / hw.DiskToCpuCacheBytesPerSecond;
        var cpuToDisk = LinearExpression.Of(size.TokenHidden, ActivationsDisk) / hw.CpuToDiskBytesPerSecond
                        + LinearExpression.Of(size.TokenCacheWrite, CacheDisk) / hw.CpuToDiskCacheBytesPerSecond;

        if (shape.CpuAttention)
        {
            // The cache off the GPU never moves to it: the query and the new key/value go down, the attention output comes up.
            var cpuRate = hw.EffectiveCpuAttentionFlops(shape.GpuBatchSize, size.HiddenSize, shape.CompressCache);
            return new PhaseTimeTerms(
                CpuToGpu: weightsIn + hiddenIn + LinearExpression.Of(size.TokenQuery, CacheCpu, CacheDisk) / hw.CpuToGpuCacheBytesPerSecond,
                GpuToCpu: hiddenOut + LinearExpression.Of(size.TokenQuery + size.TokenCacheWrite, CacheCpu, CacheDisk) / hw.GpuToCpuCacheBytesPerSecond,
                DiskToCpu: diskToCpu,
                CpuToDisk: cpuToDisk,
                // The GPU-resident caches are attended on the GPU; compressed, they are expanded there first, each step.
                GpuCompute: matmul + LinearExpression.Of(size.DecodeAttentionReads / hw.GpuMemoryBytesPerSecond
                                                         + size.MeanCacheExpansionTraffic / hw.GpuMemoryBytesPerSecond, CacheGpu),
                CpuCompute: LinearExpression.Of(size.DecodeAttentionFlops, CacheCpu, CacheDisk) / cpuRate);
        }

        // GPU attention over the whole cache: the off-GPU part of each batch's cache is brought up every step.
        return new PhaseTimeTerms(
            CpuToGpu: weightsIn + hiddenIn + LinearExpression.Of(size.MeanCacheRead, CacheCpu, CacheDisk) / hw.CpuToGpuCacheBytesPerSecond,
            GpuToCpu: hiddenOut + LinearExpression.Of(size.TokenCacheWrite, CacheCpu, CacheDisk) / hw.GpuToCpuCacheBytesPerSecond,
            DiskToCpu: diskToCpu,
            CpuToDisk: cpuToDisk,
            GpuCompute: matmul + LinearExpression.Of((size.DecodeAttentionReads + size.MeanCacheExpansionTraffic) / hw.GpuMemoryBytesPerSecond),
            CpuCompute: LinearExpression.Zero);
    }
}
