namespace ActorInfer.Planning;

/// <summary>
/// An offloading policy: the block geometry (a block is <see cref="NumGpuBatches"/> GPU batches of
/// <see cref="GpuBatchSize"/> sequences that go through one layer before the next layer's weights are needed)
/// and where each kind of tensor lives.
/// </summary>
public sealed record Policy
{
    public int GpuBatchSize { get; }
    public int NumGpuBatches { get; }
    public TierFractions Weights { get; }
    public TierFractions Cache { get; }
    public TierFractions Activations { get; }
    /// <summary>Decoding attention over a CPU- or disk-resident cache runs on the CPU instead of moving the cache to the GPU.</summary>
    public bool CpuAttention { get; init; } = true;
    /// <summary>CPU-resident weights live in pinned (page-locked) memory; a runtime concern the cost model does not price.</summary>
    public bool PinWeights { get; init; }
    /// <summary>Weights are stored as 4-bit group-wise quantized values (FlexGen's compression).</summary>
    public bool CompressWeights { get; init; }
    /// <summary>The KV cache is stored as 4-bit group-wise quantized values.</summary>
    public bool CompressCache { get; init; }
    /// <summary>
    /// The weight fractions are placed over the model as a whole (<see cref="WeightPlacement.AssignSpread"/>), to within half
    /// a tensor, instead of by FlexGen's rule within each group (for OPT, 20% on the GPU places about 8% that way).
    /// </summary>
    public bool SpreadWeights { get; init; }

    public Policy(int gpuBatchSize, int numGpuBatches, TierFractions weights, TierFractions cache, TierFractions activations)
    {
        if (gpuBatchSize <= 0)
            throw new ArgumentException($"GPU batch size must be positive, got {gpuBatchSize}");
        if (numGpuBatches <= 0)
            throw new ArgumentException($"number of GPU batches must be positive, got {numGpuBatches}");
        GpuBatchSize = gpuBatchSize;
        NumGpuBatches = numGpuBatches;
        Weights = weights ?? throw new ArgumentNullException(nameof(weights));
        Cache = cache ?? throw new ArgumentNullException(nameof(cache));
        Activations = activations ?? throw new ArgumentNullException(nameof(activations));
    }

    /// <summary>The same placement and flags for another block geometry (and, if given, other weight fractions).</summary>
    public Policy Reshaped(int gpuBatchSize, int numGpuBatches, TierFractions? weights = null) =>
        new(gpuBatchSize, numGpuBatches, weights ?? Weights, Cache, Activations)
        {
            CpuAttention = CpuAttention, PinWeights = PinWeights, CompressWeights = CompressWeights, CompressCache = CompressCache,
            SpreadWeights = SpreadWeights,
        };

    /// <summary>Sequences in one block: the batch the whole schedule works on.</summary>
    public int BlockSize => GpuBatchSize * NumGpuBatches;

    public override string ToString() =>
        $"batch {GpuBatchSize} x {NumGpuBatches}; weights {Weights}; cache {Cache}; activations {Activations}" +
        (CpuAttention ? "; cpu attention" : "") + (CompressWeights ? "; compressed weights" : "") +
        (CompressCache ? "; compressed cache" : "") + (SpreadWeights ? "; weights spread" : "");
}
