using ActorInfer.Actors.Memory;

namespace ActorInfer.Actors.Planner;

/// <summary>
/// What the actors need of a policy: the block geometry (a block is <see cref="NumGpuBatches"/> GPU batches of
/// <see cref="GpuBatchSize"/> sequences) and a description of the placement for logs.
/// </summary>
public sealed record BlockPolicy(int GpuBatchSize, int NumGpuBatches, string Placement)
{
    public int BlockSize => GpuBatchSize * NumGpuBatches;

    /// <summary>The offloading placement to apply (weights, cache and activation fractions); null keeps the engine's.</summary>
    public ActorInfer.Planning.Policy? Runtime { get; init; }

    /// <summary>The workload the policy was planned for; null when the planner plans for one workload only.</summary>
    public WorkloadBucket? Bucket { get; init; }

    /// <summary>The cost model's throughput for a block of this policy (generated tokens per second); null when not predicted.</summary>
    public double? PredictedTokensPerSecond { get; init; }

    /// <summary>
    /// Planned under conservative sizing: a running block is never dropped whole to start again under this policy,
    /// however much faster it is predicted (it only sheds what no longer fits).
    /// </summary>
    public bool KeepsRunningBlocks { get; init; }

    /// <summary>
    /// Under conservative sizing, the firm placement <see cref="Runtime"/>'s weights were raised from (null: none). An engine
    /// that can grow its weights places them as this one does and lets those <see cref="Runtime"/> adds stay on the device
    /// as each block's layers stream them in, their CPU homes kept as host copies: a fall down to the firm budget then
    /// lets go of them at once, with nothing copied (see <see cref="IInferenceEngine.Apply"/>). Any other engine places
    /// <see cref="Runtime"/>.
    /// </summary>
    public ActorInfer.Planning.Policy? GrowsFrom { get; init; }

    /// <summary>
    /// The geometry to fall back to after the device ran out of memory: half the GPU batches, or with one GPU batch half
    /// its size; null at a block of one sequence.
    /// </summary>
    public BlockPolicy? Halved() =>
        BlockSize <= 1 ? null
        : NumGpuBatches > 1 ? this with { NumGpuBatches = NumGpuBatches / 2 }
        : this with { GpuBatchSize = GpuBatchSize / 2 };

    public override string ToString() => $"{NumGpuBatches} x {GpuBatchSize} ({Placement})" + (Bucket is { } b ? $" for {b}" : "") +
        (GrowsFrom is { } firm ? $", weights grown in from {firm.Weights.Gpu * 100:F0}% on the device" : "");
}

/// <summary>Picks the best policy for a set of budgets, or null when the model cannot run within them.</summary>
public interface IPolicyPlanner
{
    BlockPolicy? Plan(TierBudgets budgets);

    /// <summary>The best policy for a block of <paramref name="bucket"/>'s requests; a planner of one workload ignores it.</summary>
    BlockPolicy? Plan(TierBudgets budgets, WorkloadBucket bucket) => Plan(budgets);

    /// <summary>
    /// <paramref name="firm"/>'s geometry, cache, activations and attention, with as many more of its weights on the
    /// device as <paramref name="budgets"/> hold (weights leave the device at once when the budget falls back; a cache
    /// cannot). A planner without placements answers <paramref name="firm"/> itself.
    /// </summary>
    BlockPolicy Raise(BlockPolicy firm, TierBudgets budgets) => firm;
}

/// <summary>Byte counts of a model that a placement has to fit (plain numbers: the planner knows no model code).</summary>
public sealed record ModelFootprint(long WeightBytes, long CacheBytesPerSequence, long ActivationBytesPerSequence)
{
    public static ModelFootprint Of(Model.Config.ModelConfig c, int bytesPerElement)
    {
        // The architecture's own tensors, and a cache as wide as its key/value heads.
        var shape = new Model.Config.ModelShape(c);
        var weights = shape.TotalBytes(bytesPerElement);
        var cache = shape.KvCacheBytes(1, c.MaxPositionEmbeddings, bytesPerElement);
        // Hidden state of a full-length prompt, its FFN expansion and one row of logits, at once.
        var activations = ((long)c.MaxPositionEmbeddings * (c.HiddenSize + c.FfnSize) + c.VocabSize) * bytesPerElement;
        return new ModelFootprint(weights, cache, activations);
    }
}

/// <summary>
/// The all-resident placement: every weight, the whole cache and the activations on the compute tier (the GPU
/// for a CUDA node, host memory for a CPU node). The block grows (batch size first, then batches) as far as the
/// budget and the configured bounds allow. The offloading search of ActorInfer.Planning replaces this when a
/// model does not fit.
/// </summary>
public sealed class ResidentPolicyPlanner(ModelFootprint footprint, Tier computeTier, int maxGpuBatchSize, int maxGpuBatches) : IPolicyPlanner
{
    public Tier ComputeTier => computeTier;

    /// <summary>
    /// The compute tier's bytes for the largest block the bounds allow, with every weight on that tier: the smallest
    /// budget for which <see cref="Plan"/> gives that block.
    /// </summary>
    public long LargestBlockBytes =>
        footprint.WeightBytes + (long)maxGpuBatchSize * maxGpuBatches * (footprint.CacheBytesPerSequence + footprint.ActivationBytesPerSequence);

    public BlockPolicy? Plan(TierBudgets budgets)
    {
        var free = budgets[computeTier] - footprint.WeightBytes;
        var perSequence = footprint.CacheBytesPerSequence + footprint.ActivationBytesPerSequence;
        if (free < perSequence) return null;
        var sequences = free / perSequence;
        var batchSize = (int)Math.Min(maxGpuBatchSize, sequences);
        var batches = (int)Math.Clamp(sequences / batchSize, 1, maxGpuBatches);
        return new BlockPolicy(batchSize, batches, $"all on {computeTier.ToString().ToLowerInvariant()}");
    }
}
