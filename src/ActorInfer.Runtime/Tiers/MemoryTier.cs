using ActorInfer.Model.Layers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tiers;

/// <summary>
/// The device tier (CUDA, or CPU memory with its own budget on a machine without CUDA) or the CPU tier (pinned
/// when CUDA is available, since <c>pin_memory()</c> throws without it). Disposing it frees the buffers it kept for
/// reuse: on a CUDA machine they are registered with the driver, and one left to the garbage collector would be unmapped
/// while still registered (a later buffer at its address then cannot be registered).
/// </summary>
public sealed class MemoryTier : Tier, IDisposable
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

    /// <summary>
    /// A tensor of this shape on the tier, held against its budget: zeroed, unless <paramref name="zeroed"/> is false
    /// and the caller writes it before it reads it (a KV cache is read only up to what was written; a stored hidden
    /// state is copied in whole), in which case a kept buffer is handed out as it was left.
    /// </summary>
    public TensorLease Allocate(long[] shape, ScalarType dtype, string what, bool zeroed = true)
    {
        var bytes = BytesOf(shape, dtype);
        var reusable = Reuses(bytes);
        if (reusable)
        {
            if (TakeKept(shape, dtype) is { } kept)
            {
                try
                {
                    Reserve(bytes, what);
                }
                catch
                {
                    Keep(kept.Tensor, bytes, kept.Free, force: true);
                    throw;
                }
                if (zeroed) kept.Tensor.zero_();
                return new TensorLease(this, kept.Tensor, bytes, kept.Free, reusable: true);
            }
            MakeRoom(bytes);
        }
        Reserve(bytes, what);
        try
        {
            if (Pinned && bytes >= RegisterInPlaceBytes)
            {
                // Large buffers are page-locked in place: pin_memory() would copy them into the caching host
                // allocator, which rounds each block up to a power of two (a 374 MB cache slice takes 512 MB).
                // The registered range must be whole pages of this buffer alone: the C library may serve a large
                // request from its heap, beside another registered buffer, and CUDA refuses a range that shares a
                // page with one already registered. So the buffer is allocated two pages longer and starts at the
                // first page boundary inside it (the two pages are not counted against the budget).
                // Untouched until the kernel is asked for huge pages over it; then zeroed on the intra-op threads (the
                // first touch, in parallel) before the driver pins it.
                var page = Environment.SystemPageSize;
                var element = ElementSize(dtype);
                var began = System.Diagnostics.Stopwatch.GetTimestamp();
                using var flat = empty(bytes / element + 2L * page / element, dtype: dtype, device: Device);
                var start = Cuda.TensorPointers.Data(flat);
                var (skip, registered) = PageOwnedRange(start, bytes, page, element);
                var pointer = start + (nint)skip;
                HostPages.AdviseHuge(pointer, registered);
                var big = flat.narrow(0, skip / element, bytes / element).view(shape);
                big.DetachFromDisposeScope();
                big.zero_();
                var touched = System.Diagnostics.Stopwatch.GetTimestamp();
                try
                {
                    Cuda.CudaRuntime.HostRegister(pointer, registered);
                    HostPages.Count(bytes, touched - began, System.Diagnostics.Stopwatch.GetTimestamp() - touched);
                }
                catch
                {
                    big.Dispose();
                    throw;
                }
                return new TensorLease(this, big, bytes, () => Cuda.CudaRuntime.HostUnregister(pointer), reusable);
            }
            var tensor = zeros(shape, dtype: dtype, device: Device);
            if (Pinned)
            {
                var pinned = tensor.pin_memory();
                tensor.Dispose();
                tensor = pinned;
            }
            tensor.DetachFromDisposeScope();
            return new TensorLease(this, tensor, bytes, reusable: reusable);
        }
        catch
        {
            Release(bytes);
            throw;
        }
    }

    /// <summary>
    /// Where a buffer of <paramref name="bytes"/> starts inside an allocation at <paramref name="start"/> that is two
    /// pages longer, so that it begins on a page boundary, and the whole pages from there that cover it (all inside
    /// the allocation): the range to register.
    /// </summary>
    internal static (long SkipBytes, long RegisteredBytes) PageOwnedRange(nint start, long bytes, int page, long element)
    {
        if (page <= 0 || (page & (page - 1)) != 0) throw new ArgumentException($"a page of {page} bytes is not a power of two", nameof(page));
        var skip = (page - (long)start % page) % page;
        if (skip % element != 0)
            throw new InvalidOperationException($"a buffer at 0x{start:x} cannot start on a page boundary in whole elements of {element} bytes");
        var registered = (bytes + page - 1) / page * page;
        return (skip, registered);
    }

    // Freed large buffers of the CPU tier, by shape, kept for the next lease of the same shape. What they take counts
    // with what is held against the budget: a new buffer that would not fit beside them frees them first.
    private readonly Lock _keptGate = new();
    private readonly Dictionary<string, Stack<(Tensor Tensor, Action? Free)>> _kept = [];
    private long _keptBytes;

    /// <summary>Bytes of freed buffers the tier keeps for reuse (not held by any lease).</summary>
    public long KeptBytes
    {
        get { lock (_keptGate) return _keptBytes; }
    }

    private bool Reuses(long bytes) => Kind == TierKind.Cpu && Device.type == TorchSharp.DeviceType.CPU && bytes >= RegisterInPlaceBytes;

    private static string KeyOf(long[] shape, ScalarType dtype) => $"{dtype}[{string.Join(",", shape)}]";

    private (Tensor Tensor, Action? Free)? TakeKept(long[] shape, ScalarType dtype)
    {
        lock (_keptGate)
        {
            if (!_kept.TryGetValue(KeyOf(shape, dtype), out var stack) || stack.Count == 0) return null;
            var kept = stack.Pop();
            _keptBytes -= BytesOf(shape, dtype);
            return kept;
        }
    }

    /// <summary>Keeps a freed buffer when it fits beside what is held; false when the caller must free it.</summary>
    internal bool Keep(Tensor tensor, long bytes, Action? free, bool force = false)
    {
        lock (_keptGate)
        {
            // The lease giving it back is still counted in BytesHeld.
            if (!force && BytesHeld + _keptBytes > BudgetBytes) return false;
            var key = KeyOf(tensor.Dims(), tensor.dtype);
            if (!_kept.TryGetValue(key, out var stack)) _kept[key] = stack = new Stack<(Tensor, Action?)>();
            stack.Push((tensor, free));
            _keptBytes += bytes;
            return true;
        }
    }

    /// <summary>Frees kept buffers until <paramref name="bytes"/> more fit beside what is held and kept.</summary>
    private void MakeRoom(long bytes)
    {
        lock (_keptGate)
            while (_keptBytes > 0 && BytesHeld + _keptBytes + bytes > BudgetBytes) FreeOneKept();
    }

    private void FreeOneKept()
    {
        var (key, stack) = _kept.Where(e => e.Value.Count > 0).MaxBy(e => e.Value.Peek().Tensor.NumberOfElements * e.Value.Peek().Tensor.ElementSize);
        var (tensor, free) = stack.Pop();
        if (stack.Count == 0) _kept.Remove(key);
        _keptBytes -= tensor.NumberOfElements * tensor.ElementSize;
        free?.Invoke();
        tensor.Dispose();
    }

    /// <summary>Frees every kept buffer (a job's end: the tier then holds only what leases hold).</summary>
    public void Trim()
    {
        lock (_keptGate)
            while (_keptBytes > 0) FreeOneKept();
    }

    protected override void OnBudgetChanged() => MakeRoom(0);

    /// <summary>Frees the kept buffers (<see cref="Trim"/>); what leases hold is theirs to free.</summary>
    public void Dispose() => Trim();

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
