using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tiers;

/// <summary>A tensor held against a memory tier's budget; disposing it frees the tensor and gives the bytes back.</summary>
public sealed class TensorLease : IDisposable
{
    private bool _disposed;

    private readonly Action? _beforeFree;

    // The set of needs the buffer was leased under, for a buffer the tier keeps when it comes back; null for others.
    private readonly int? _generation;

    internal TensorLease(MemoryTier tier, Tensor tensor, long bytes, Action? beforeFree = null, int? generation = null)
    {
        Tier = tier;
        Tensor = tensor;
        Bytes = bytes;
        _beforeFree = beforeFree;
        _generation = generation;
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
        if (_generation is not { } generation || !Tier.Return(Tensor, Bytes, _beforeFree, generation))
        {
            _beforeFree?.Invoke();
            Tensor.Dispose();
        }
        Tier.Release(Bytes);
    }
}
