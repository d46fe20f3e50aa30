namespace ActorInfer.Actors.Node;

/// <summary>What the user asked for: a fixed policy (percentages and geometry) or a planner search, and tier budgets.</summary>
/// <param name="CpuAttention">On, off, or null to let the planner try both (with a search only).</param>
public sealed record PolicyChoice(bool Auto, double[]? Percent, int? GpuBatchSize, int? NumGpuBatches, bool? CpuAttention,
    string? DiskDir, long? GpuMem, long? CpuMem, long? DiskMem, string? Hardware, bool ThroughActors = true, bool Compare = false,
    bool CompressCache = false, ActorInfer.Model.Layers.DecodeAttention DecodeAttention = ActorInfer.Model.Layers.DecodeAttention.Fused,
    bool CompressWeights = false, bool BatchInvariant = false, bool CudaGraphs = false, bool SpreadWeights = false);
