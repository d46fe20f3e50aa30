namespace ActorInfer.Planning;

/// <summary>What the search may choose and what it must keep: fixed shares, a fixed batch geometry, flags.</summary>
public sealed record SearchOptions
{
    /// <summary>Shares the search must keep (the others are free).</summary>
    public IReadOnlyDictionary<Placement, double> FixedShares { get; init; } = new Dictionary<Placement, double>();
    public int? GpuBatchSize { get; init; }
    public int? NumGpuBatches { get; init; }
    /// <summary>null: try both CPU attention over an off-GPU cache and GPU attention, keep the faster.</summary>
    public bool? CpuAttention { get; init; } = true;
    public bool CompressWeights { get; init; }
    public bool CompressCache { get; init; }
    /// <summary>Weights placed over the model as a whole (<see cref="Policy.SpreadWeights"/>), not by FlexGen's rule per group.</summary>
    public bool SpreadWeights { get; init; }
    /// <summary>The largest block (GPU batch size x number of GPU batches) the enumeration considers.</summary>
    public int MaxBlockSize { get; init; } = 8192;
    /// <summary>The largest GPU batch size the enumeration considers (a node's configured bound); null: only the block bound.</summary>
    public int? MaxGpuBatchSize { get; init; }
    /// <summary>The most GPU batches in a block the enumeration considers; null: only the block bound.</summary>
    public int? MaxNumGpuBatches { get; init; }

    public static SearchOptions Default { get; } = new();

    /// <summary>Fixes all nine shares from FlexGen-style percentages: weights, cache, activations on GPU and CPU; disk takes the rest.</summary>
    public SearchOptions WithPercent(double weightsGpu, double weightsCpu, double cacheGpu, double cacheCpu, double activationsGpu, double activationsCpu)
    {
        var weights = TierFractions.FromPercent(weightsGpu, weightsCpu);
        var cache = TierFractions.FromPercent(cacheGpu, cacheCpu);
        var activations = TierFractions.FromPercent(activationsGpu, activationsCpu);
        return this with
        {
            FixedShares = new Dictionary<Placement, double>
            {
                [Placement.WeightsGpu] = weights.Gpu, [Placement.WeightsCpu] = weights.Cpu, [Placement.WeightsDisk] = weights.Disk,
                [Placement.CacheGpu] = cache.Gpu, [Placement.CacheCpu] = cache.Cpu, [Placement.CacheDisk] = cache.Disk,
                [Placement.ActivationsGpu] = activations.Gpu, [Placement.ActivationsCpu] = activations.Cpu, [Placement.ActivationsDisk] = activations.Disk,
            },
        };
    }

    public void Validate()
    {
        if (GpuBatchSize is <= 0)
            throw new ArgumentException($"GPU batch size must be positive, got {GpuBatchSize}");
        if (NumGpuBatches is <= 0)
            throw new ArgumentException($"number of GPU batches must be positive, got {NumGpuBatches}");
        if (MaxBlockSize <= 0)
            throw new ArgumentException($"maximum block size must be positive, got {MaxBlockSize}");
        if (MaxGpuBatchSize is <= 0)
            throw new ArgumentException($"maximum GPU batch size must be positive, got {MaxGpuBatchSize}");
        if (MaxNumGpuBatches is <= 0)
            throw new ArgumentException($"maximum number of GPU batches must be positive, got {MaxNumGpuBatches}");
        foreach (var (share, value) in FixedShares)
        {
            if (double.IsNaN(value) || value < 0 || value > 1)
                throw new ArgumentException($"fixed share {share} must be in [0, 1], got {value}");
        }
        foreach (var kind in new[] { "Weights", "Cache", "Activations" })
        {
            var fixedOfKind = FixedShares.Where(p => p.Key.ToString().StartsWith(kind, StringComparison.Ordinal)).ToList();
            var sum = fixedOfKind.Sum(p => p.Value);
            if (sum > 1 + TierFractions.Tolerance || (fixedOfKind.Count == 3 && Math.Abs(sum - 1) > TierFractions.Tolerance))
                throw new ArgumentException($"fixed {kind.ToLowerInvariant()} shares sum to {sum}, which cannot make 1");
        }
    }
}

/// <summary>The memory rule that stopped the search from doing better: the fullest tier and phase of the chosen policy.</summary>
public sealed record BindingConstraint(Tier Tier, Phase Phase, double Utilization)
{
    /// <summary>A rule is binding when the policy fills the tier to within this fraction of its usable bytes.</summary>
    public const double Threshold = 0.999;

    public bool IsBinding => Utilization >= Threshold;

    public override string ToString() => IsBinding
        ? $"{Tier} memory in {Phase.ToString().ToLowerInvariant()} ({Utilization:P1} of usable)"
        : $"no memory rule binds (fullest: {Tier} in {Phase.ToString().ToLowerInvariant()}, {Utilization:P1}); the block size bound or the rates limit";
}

public sealed record SearchResult
{
    public required Policy Policy { get; init; }
    public required CostEstimate Estimate { get; init; }
    public required BindingConstraint Binding { get; init; }
    /// <summary>Batch geometries (and attention modes) for which a linear program was solved.</summary>
    public required int CandidatesEvaluated { get; init; }
    public required TimeSpan SearchTime { get; init; }
}

/// <summary>No placement of any considered geometry fits; carries the least memory each tier would need.</summary>
public sealed class NoFeasiblePolicyException(string message, TierBytes minimumPerTier, double minimumTotal) : Exception(message)
{
    /// <summary>Per tier, the least peak that tier would need with the other tiers unlimited, at the smallest geometry.</summary>
    public TierBytes MinimumPerTier { get; } = minimumPerTier;
    /// <summary>The least sum of the three tiers' peaks.</summary>
    public double MinimumTotal { get; } = minimumTotal;
}
