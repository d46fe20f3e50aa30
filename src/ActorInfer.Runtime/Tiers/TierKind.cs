namespace ActorInfer.Runtime.Tiers;

/// <summary>Where a tensor lives: the compute device, (pinned) CPU memory, or files on disk.</summary>
public enum TierKind
{
    Device,
    Cpu,
    Disk,
}

/// <summary>An allocation or a placement that a tier's budget cannot hold.</summary>
public sealed class TierBudgetExceededException(TierKind tier, long bytesNeeded, long bytesAllowed, string what)
    : Exception($"{tier} tier: {what} needs {bytesNeeded} bytes but the tier allows {bytesAllowed} bytes")
{
    public TierKind Tier { get; } = tier;
    public long BytesNeeded { get; } = bytesNeeded;
    public long BytesAllowed { get; } = bytesAllowed;
}
