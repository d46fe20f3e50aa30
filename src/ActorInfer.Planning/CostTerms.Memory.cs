using static ActorInfer.Planning.LinearExpression;
using static ActorInfer.Planning.Placement;

namespace ActorInfer.Planning;

/// <summary>
/// The peak memory terms, each tied to what the runtime holds at the busiest point of a (layer, GPU batch): the batch
/// computing, the next batch's inputs already loaded and the previous batch's outputs still being stored
/// (<c>BlockStep.RunCurrent</c> completes the previous stores only after this batch's compute).
/// </summary>
public sealed partial record CostTerms
{
    /// <summary>Tokens the runtime compresses at a time when it stores a prompt's keys and values (<c>CompressedKvHome</c>).</summary>
    private const int CompressionChunkTokens = 128;

    /// <summary>Temporaries of compressing a chunk, in the chunk's elements: its token-major copy, its shifted copy, and the codes.</summary>
    private const double CompressionTemporariesPerElement = 3;

    /// <summary>
    /// Elements per token that one GPU batch's computation holds at once, beyond its input state, the weights and the
    /// cache: the larger of two stages of the runtime's layer (<c>BlockStep.Compute</c>, the architecture's math).
    /// Attention: the normed input, the queries, this step's keys and values, grouped key/value heads repeated for the
    /// fused kernel, the kernel's output and its merged copy, and <paramref name="scores"/>. The prefill's fused kernel
    /// never materializes its scores (FlexGen's own attention holds two copies of them, and its cost model counts
    /// them); decoding attended on the GPU by batched products holds the scores and their softmax. MLP (the attention
    /// context is freed once projected): the attended state, the normed input or the layer's output, and the FFN's
    /// intermediates (OPT's ReLU works in place: one; a gated MLP holds its gate, activation, up projection and product).
    /// </summary>
    private static double ComputeElementsPerToken(ModelSpec model, double scores)
    {
        double hidden = model.HiddenSize, queries = (double)model.NumHeads * model.HeadDim, keys = model.KeyValueWidth;
        var repeated = keys < queries ? 2 * queries : 0;
        var attention = hidden + 3 * queries + 2 * keys + repeated + scores;
        var mlp = 2 * hidden + (model.GatedFfn ? 4 : 1) * (double)model.FfnSize;
        return Math.Max(attention, mlp);
    }

    /// <summary>Compressed weights are expanded into one float16 layer on the GPU before use.</summary>
    private static double DecompressionBuffer(Sizes size) =>
        size.LayerWeights < size.UncompressedLayerWeights ? size.UncompressedLayerWeights : 0;

    /// <summary>The GPU parts common to both phases: homes, weight buffers and hidden states in flight.</summary>
    private static List<MemoryPart> GpuHomesAndBuffers(Sizes size, double blockHidden, double batchHidden) =>
    [
        new("weights", size.AllWeightsOn(Tier.Gpu), Home: true),
        new("cache", Of(size.AllCache, CacheGpu), Home: true),
        new("hidden_states", Of(blockHidden, ActivationsGpu), Home: true),
        // This layer's off-GPU weights and the next layer's, whose buffers are taken when this layer's first batch starts.
        new("weight_buffers", 2 * size.LargestLayerWeightsOffGpu),
        new("weight_expansion", Of(DecompressionBuffer(size))),
        // Off the GPU a hidden state is loaded into a device copy: the next batch's, this batch's (held until its
        // compute ends), and the previous batch's output, kept until its store is done.
        new("hidden_in_flight", Of(3 * batchHidden, ActivationsCpu, ActivationsDisk)),
    ];

    private static PhaseMemoryTerms PrefillMemoryTerms(Sizes size, PolicyShape shape)
    {
        var gpu = GpuHomesAndBuffers(size, size.PromptHidden, size.BatchPromptHidden);
        // A batch's new keys and values (compressed, where the cache is) stay on the GPU until their copy home is done,
        // after the next batch computes: this batch's and the previous one's.
        gpu.Add(new("cache_in_flight", Of(2 * size.BatchPromptCache, CacheCpu, CacheDisk)));
        gpu.Add(new("compute", Of(size.PrefillCompute)));
        var cpuHome = size.AllWeightsOn(Tier.Cpu) + Of(size.AllCache, CacheCpu) + Of(size.PromptHidden, ActivationsCpu);
        // Everything that reaches disk or comes from it is staged in CPU memory, double-buffered.
        var cpuStaging = 2 * size.LargestLayerWeightsOnDisk
                         + Of(2 * size.BatchPromptHidden, ActivationsDisk)
                         + Of(2 * size.BatchPromptCache, CacheDisk);
        var disk = size.AllWeightsOn(Tier.Disk) + Of(size.AllCache, CacheDisk) + Of(size.PromptHidden, ActivationsDisk);
        return PhaseMemoryTerms.Of(gpu, cpuHome + cpuStaging, disk);
    }

    private static PhaseMemoryTerms DecodeMemoryTerms(Sizes size, PolicyShape shape)
    {
        var gpu = GpuHomesAndBuffers(size, size.TokenHidden, size.BatchTokenHidden);
        var cpuHome = size.AllWeightsOn(Tier.Cpu) + Of(size.AllCache, CacheCpu) + Of(size.TokenHidden, ActivationsCpu);
        var cpuStaging = 2 * size.LargestLayerWeightsOnDisk
                         + Of(2 * size.BatchTokenHidden, ActivationsDisk)
                         + Of(2 * size.BatchFullCache, CacheDisk);
        // A compressed cache is never read in place: the batch computing and the next one (loaded before this compute)
        // each hold a working cache expanded where attention runs, and expanding holds the codes split in two.
        var expansion = 2 * size.BatchFullCacheExpanded + size.CacheExpansionTemporaries;
        if (shape.CpuAttention)
        {
            // Scores are computed only over the GPU-resident part on the GPU; the CPU holds float32 scores of one batch
            // for its part (taken in proportion to its share).
            gpu.Add(new("compute", Of(size.DecodeComputeWithoutScores)
                                   + Of(size.DecodeComputeWithScores - size.DecodeComputeWithoutScores, CacheGpu)));
            // A cache that lives on the GPU is attended there; compressed, it is expanded there first, whatever its share.
            if (shape.CompressCache && shape.CacheOnGpu)
                gpu.Add(new("cache_expansion", Of(expansion)));
            cpuStaging += Of(size.CpuAttentionScratch, CacheCpu, CacheDisk);
            // The same working caches on the CPU for the caches attended there, unless the runtime reads their codes.
            if (shape.CompressCache && !size.CpuAttendsCacheCodes)
                cpuStaging += Of(2 * size.BatchFullCacheExpanded);
        }
        else
        {
            gpu.Add(new("compute", Of(size.DecodeComputeWithScores)));
            // Each batch's off-GPU cache is brought up whole (compressed, staged beside its expansion) for the batch
            // computing and the next; an uncompressed one read from disk passes through a token-major copy too.
            gpu.Add(new("cache_in_flight", Of(2 * size.BatchFullCache, CacheCpu, CacheDisk)
                                           + Of(shape.CompressCache ? 0 : size.BatchFullCache, CacheDisk)));
            if (shape.CompressCache)
                gpu.Add(new("cache_expansion", Of(expansion)));
        }
        var disk = size.AllWeightsOn(Tier.Disk) + Of(size.AllCache, CacheDisk) + Of(size.TokenHidden, ActivationsDisk);
        return PhaseMemoryTerms.Of(gpu, cpuHome + cpuStaging, disk);
    }
}
