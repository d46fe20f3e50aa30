using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tiers;

/// <summary>A tensor held against a memory tier's budget; disposing it frees the tensor and gives the bytes back.</summary>
public sealed class TensorLease : IDisposable
{
    private bool _disposed;

    private readonly Action? _beforeFree;

    private readonly bool _reusable;

    internal TensorLease(MemoryTier tier, Tensor tensor, long bytes, Action? beforeFree = null, bool reusable = false)
    {
        Tier = tier;
        Tensor = tensor;
        Bytes = bytes;
        _beforeFree = beforeFree;
        _reusable = reusable;
    }

    public MemoryTier Tier { get; }
    public Tensor Tensor { get; }
    public long Bytes { get; }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        // A large CPU buffer goes back to its tier for the next lease of its shape (paging it in and locking it
        // again costs more than the copies it serves); the tier frees it when it needs the room.
        if (!_reusable || !Tier.Keep(Tensor, Bytes, _beforeFree))
        {
            _beforeFree?.Invoke();
            Tensor.Dispose();
        }
        Tier.Release(Bytes);
    }
}
