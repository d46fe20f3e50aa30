using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tiers;

/// <summary>A buffer the next block will take from the CPU tier, <see cref="Count"/> times over.</summary>
public sealed record HostBufferNeed(long[] Shape, ScalarType DType, int Count)
{
    public long Bytes => MemoryTier.BytesOf(Shape, DType);

    public override string ToString() => $"{Count} x {HostBufferPool.KeyOf(Shape, DType)}";
}

/// <summary>What a new set of needs asked of the CPU tier: the bytes of the buffers it wants, and of those queued to be made.</summary>
public sealed record HostBufferPreparation(long WantedBytes, long QueuedBytes);

/// <summary>
/// Where the CPU tier's large buffers came from, over the tier's life; a block's share is the difference of two.
/// Prepared: made ahead by the pool's worker. Inline: made by the thread that asked for them (on CUDA, page-locked
/// there, taking the touching and registering times).
/// Released: freed by the worker because no need wanted them any more. Worker failures: buffers it could not make or
/// unregister (the block then makes what it needs itself).
/// </summary>
public sealed record HostBufferCounts(long PreparedBytes, TimeSpan Preparing, long ServedPreparedBytes, long ReusedBytes,
    long InlineBytes, TimeSpan InlineTouching, TimeSpan InlineRegistering, long ReleasedBytes, TimeSpan Releasing,
    int WorkerFailures, string? LastFailure)
{
    public static HostBufferCounts operator -(HostBufferCounts a, HostBufferCounts b) =>
        new(a.PreparedBytes - b.PreparedBytes, a.Preparing - b.Preparing, a.ServedPreparedBytes - b.ServedPreparedBytes,
            a.ReusedBytes - b.ReusedBytes, a.InlineBytes - b.InlineBytes, a.InlineTouching - b.InlineTouching,
            a.InlineRegistering - b.InlineRegistering, a.ReleasedBytes - b.ReleasedBytes, a.Releasing - b.Releasing,
            a.WorkerFailures - b.WorkerFailures, a.WorkerFailures > b.WorkerFailures ? a.LastFailure : null);
}
