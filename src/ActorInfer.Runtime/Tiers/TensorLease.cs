using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tiers;

/// <summary>A tensor held against a memory tier's budget; disposing it frees the tensor and gives the bytes back.</summary>
public sealed class TensorLease : IDisposable
{
    private bool _disposed;

    private readonly Action? _beforeFree;

    internal TensorLease(MemoryTier tier, Tensor tensor, long bytes, Action? beforeFree = null)
    {
        Tier = tier;
        Tensor = tensor;
        Bytes = bytes;
        _beforeFree = beforeFree;
    }

    public MemoryTier Tier { get; }
    public Tensor Tensor { get; }
    public long Bytes { get; }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _beforeFree?.Invoke();
        Tensor.Dispose();
        Tier.Release(Bytes);
    }
}
