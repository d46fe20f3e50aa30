using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tiers;

/// <summary>
/// A large CPU-tier buffer that no lease holds, in the <see cref="HostBufferPool"/>'s hands: kept, or on its way to
/// being freed. <see cref="Free"/> unregisters it (on CUDA) beside disposing it; <see cref="Prepared"/>: made ahead by
/// the pool's worker rather than given back by a lease.
/// </summary>
internal sealed record HostBuffer(Tensor Tensor, Action? Free, long Bytes, bool Prepared)
{
    /// <summary>Unregisters (on CUDA) and frees a buffer; the tensor is disposed even when unregistering fails.</summary>
    public void FreeNow()
    {
        try
        {
            Free?.Invoke();
        }
        finally
        {
            Tensor.Dispose();
        }
    }
}

/// <summary>A buffer shape the next block will take from the CPU tier, <see cref="Count"/> times over, as the pool keys it.</summary>
internal sealed record WantedBuffer(long[] Shape, ScalarType DType, long Bytes, int Count);
