using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tiers;

/// <summary>
/// The device tier (CUDA, or CPU memory with its own budget on a machine without CUDA) or the CPU tier (pinned
/// when CUDA is available, since <c>pin_memory()</c> throws without it).
/// </summary>
public sealed class MemoryTier : Tier
{
    public MemoryTier(TierKind kind, long budgetBytes, Device device, bool pin)
        : base(kind, budgetBytes)
    {
        if (kind == TierKind.Disk) throw new ArgumentException("the disk tier is a DiskTier");
        Device = device;
        Pinned = pin && cuda.is_available() && device.type == TorchSharp.DeviceType.CPU;
    }

    public Device Device { get; }
    public bool Pinned { get; }

    /// <summary>The device tier: CUDA when available, else the CPU.</summary>
    public static MemoryTier ForDevice(long budgetBytes) =>
        new(TierKind.Device, budgetBytes, cuda.is_available() ? CUDA : CPU, pin: false);

    public static MemoryTier ForCpu(long budgetBytes) => new(TierKind.Cpu, budgetBytes, CPU, pin: true);

    public static long BytesOf(long[] shape, ScalarType dtype) =>
        shape.Aggregate(1L, (a, b) => a * b) * ElementSize(dtype);

    public static long ElementSize(ScalarType dtype)
    {
        using var probe = empty(0, dtype: dtype);
        return probe.ElementSize;
    }

    /// <summary>From this size up, pinned buffers are registered in place (their pages belong to them alone).</summary>
    private const long RegisterInPlaceBytes = 4L << 20;

    /// <summary>A zeroed tensor of this shape on the tier, held against its budget.</summary>
    public TensorLease Allocate(long[] shape, ScalarType dtype, string what)
    {
        var bytes = BytesOf(shape, dtype);
        Reserve(bytes, what);
        try
        {
            if (Pinned && bytes >= RegisterInPlaceBytes)
            {
                // Large buffers are page-locked in place: pin_memory() would copy them into the caching host
                // allocator, which rounds each block up to a power of two (a 374 MB cache slice takes 512 MB).
                var big = zeros(shape, dtype: dtype, device: Device);
                big.DetachFromDisposeScope();
                var pointer = Cuda.TensorPointers.Data(big);
                Cuda.CudaRuntime.HostRegister(pointer, bytes);
                return new TensorLease(this, big, bytes, () => Cuda.CudaRuntime.HostUnregister(pointer));
            }
            var tensor = zeros(shape, dtype: dtype, device: Device);
            if (Pinned)
            {
                var pinned = tensor.pin_memory();
                tensor.Dispose();
                tensor = pinned;
            }
            tensor.DetachFromDisposeScope();
            return new TensorLease(this, tensor, bytes);
        }
        catch
        {
            Release(bytes);
            throw;
        }
    }

    /// <summary>Takes ownership of a tensor that compute produced on this tier's device, holding its bytes.</summary>
    public TensorLease Adopt(Tensor tensor, string what)
    {
        if (tensor.device_type != Device.type)
            throw new ArgumentException($"{Kind} tier: cannot adopt a tensor on {tensor.device} (the tier is on {Device})");
        var bytes = tensor.NumberOfElements * tensor.ElementSize;
        Reserve(bytes, what);
        tensor.DetachFromDisposeScope();
        return new TensorLease(this, tensor, bytes);
    }
}
