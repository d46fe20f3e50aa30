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

/// <summary>Recognises the device running out of memory, whichever layer reports it.</summary>
public static class DeviceMemory
{
    /// <summary>
    /// True for the device tier refusing an allocation past its budget, and for CUDA's own "out of memory"
    /// errors (libtorch's caching allocator and the CUDA runtime word them differently; both say "out of memory").
    /// </summary>
    public static bool IsOutOfMemory(Exception error)
    {
        for (var e = error; e is not null; e = e.InnerException)
        {
            if (e is TierBudgetExceededException { Tier: TierKind.Device }) return true;
            if (e is not OutOfMemoryException && e.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase)
                && e.Message.Contains("CUDA", StringComparison.OrdinalIgnoreCase)) return true;
        }
        return false;
    }
}
