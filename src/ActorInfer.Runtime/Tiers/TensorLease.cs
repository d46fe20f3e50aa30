using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tiers;

/// <summary>A tensor held against a memory tier's budget; disposing it frees the tensor and gives the bytes back.</summary>
public sealed class TensorLease : IDisposable
{
    private bool _disposed;

    internal TensorLease(MemoryTier tier, Tensor tensor, long bytes)
    {
        Tier = tier;
        Tensor = tensor;
        Bytes = bytes;
    }

    public MemoryTier Tier { get; }
    public Tensor Tensor { get; }
    public long Bytes { get; }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Tensor.Dispose();
        Tier.Release(Bytes);
    }
}
