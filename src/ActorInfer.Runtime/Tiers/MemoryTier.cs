using System.Diagnostics;
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
        _pool = new HostBufferPool(this);
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
        if (!Reuses(bytes))
        {
            Reserve(bytes, what);
            try
            {
                return new TensorLease(this, Make(shape, dtype, bytes).Tensor, bytes);
            }
            catch
            {
                Release(bytes);
                throw;
            }
        }
        if (_pool.Acquire(shape, dtype, bytes, what, out var generation) is { } kept)
        {
            if (zeroed) kept.Tensor.zero_();
            return new TensorLease(this, kept.Tensor, bytes, kept.Free, generation);
        }
        try
        {
            var made = Make(shape, dtype, bytes);
            _pool.Made(bytes, made.TouchTicks, made.RegisterTicks);
            return new TensorLease(this, made.Tensor, bytes, made.Free, generation);
        }
        catch
        {
            _pool.Abandon(shape, dtype);
            Release(bytes);
            throw;
        }
    }

    /// <summary>A new zeroed buffer, what frees it beside disposing it, and the stopwatch ticks spent touching and registering it.</summary>
    internal sealed record Made(Tensor Tensor, Action? Free, long TouchTicks, long RegisterTicks);

    /// <summary>Makes a new zeroed buffer of this shape (not held against the budget: the caller holds it).</summary>
    internal Made Make(long[] shape, ScalarType dtype, long bytes)
    {
        // A normal tensor even when compute in inference mode asks: the buffer may be reused, and written in place, outside it.
        using var normal = inference_mode(false);
        if (bytes >= RegisterInPlaceBytes && _arena is { } arena && arena.DType == dtype && arena.Carve(shape) is { } carved)
            return new Made(carved.Tensor, carved.GiveBack, 0, 0);
        if (Pinned && bytes >= RegisterInPlaceBytes) return MakeLarge(shape, dtype, bytes);
        var tensor = zeros(shape, dtype: dtype, device: Device);
        if (Pinned)
        {
            var pinned = tensor.pin_memory();
            tensor.Dispose();
            tensor = pinned;
        }
        tensor.DetachFromDisposeScope();
        return new Made(tensor, null, 0, 0);
    }

    /// <summary>
    /// A zeroed buffer of this shape, page-locked in place where the tier is pinned (else plain zeroed memory), and what
    /// frees it beside disposing it.
    /// </summary>
    private Made MakeLarge(long[] shape, ScalarType dtype, long bytes)
    {
        using var normal = inference_mode(false);
        if (!Pinned)
        {
            var plain = zeros(shape, dtype: dtype, device: Device);
            plain.DetachFromDisposeScope();
            return new Made(plain, null, 0, 0);
        }
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
        var began = Stopwatch.GetTimestamp();
        using var flat = empty(bytes / element + 2L * page / element, dtype: dtype, device: Device);
        var start = ActorInfer.Model.Layers.TensorData.Pointer(flat);
        var (skip, registered) = PageOwnedRange(start, bytes, page, element);
        var pointer = start + (nint)skip;
        HostPages.AdviseHuge(pointer, registered);
        var big = flat.narrow(0, skip / element, bytes / element).view(shape);
        big.DetachFromDisposeScope();
        big.zero_();
        var touched = Stopwatch.GetTimestamp();
        try
        {
            Cuda.CudaRuntime.HostRegister(pointer, registered);
        }
        catch
        {
            big.Dispose();
            throw;
        }
        return new Made(big, () => Cuda.CudaRuntime.HostUnregister(pointer), touched - began, Stopwatch.GetTimestamp() - touched);
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

    // Freed large buffers of the CPU tier, kept for the next lease of the same shape, and those prepared for the next block.
    private readonly HostBufferPool _pool;

    // The CPU tier's memory made once (PinAtStart), from which its large buffers of the arena's type are carved.
    private PinnedArena? _arena;

    /// <summary>Bytes of the block made by <see cref="PinAtStart"/> (0 without one).</summary>
    public long ArenaBytes => _arena?.Bytes ?? 0;

    /// <summary>
    /// Makes <paramref name="bytes"/> of this CPU tier's memory at once (touched and, on CUDA, page-locked), for its large
    /// buffers of <paramref name="dtype"/> to be carved from instead of each being made when a block first asks for it;
    /// what does not fit there, or is of another type, is made as before. The memory stays the process's until the tier
    /// is disposed, whatever the budget does later (the budget still bounds what leases hold).
    /// </summary>
    /// <returns>The seconds it took.</returns>
    public double PinAtStart(long bytes, ScalarType dtype)
    {
        if (Kind != TierKind.Cpu || Device.type != TorchSharp.DeviceType.CPU)
            throw new InvalidOperationException($"only the CPU tier makes its memory at start (this is the {Kind} tier on {Device})");
        if (_arena is not null) throw new InvalidOperationException("the CPU tier's memory was made at start already");
        var element = ElementSize(dtype);
        var elements = bytes / PinnedArena.AlignmentBytes * PinnedArena.AlignmentBytes / element;
        if (elements <= 0) throw new ArgumentOutOfRangeException(nameof(bytes), bytes, $"less than the {PinnedArena.AlignmentBytes} bytes of one range");
        var began = Stopwatch.GetTimestamp();
        var made = MakeLarge([elements], dtype, elements * element);
        _arena = new PinnedArena(made.Tensor, made.Free);
        return Stopwatch.GetElapsedTime(began).TotalSeconds;
    }

    /// <summary>Bytes of buffers the tier keeps ready for reuse (not held by any lease).</summary>
    public long KeptBytes => _pool.KeptBytes;

    /// <summary>
    /// What the tier takes of its memory: bytes held by leases, kept ready for reuse, and being made or freed by the
    /// worker that prepares buffers. The budget bounds it (what the kept and prepared buffers take is given up first).
    /// </summary>
    public long BytesTaken => BytesHeld + _pool.KeptBytes + _pool.InTransitBytes;

    /// <summary>Where the tier's large buffers came from so far (prepared ahead, reused, or made inline).</summary>
    public HostBufferCounts HostBuffers => _pool.Counts;

    /// <summary>Whether the tier's worker has nothing left to prepare or free.</summary>
    public bool PreparationIdle => _pool.Idle;

    /// <summary>
    /// The buffers the next block will take from this tier: a background worker makes the missing ones (allocated,
    /// touched and, on CUDA, page-locked) so that the block's allocations find them ready; buffers no longer wanted are
    /// freed. Only the CPU tier keeps buffers: on another tier this does nothing.
    /// </summary>
    /// <returns>The bytes wanted and queued; null when nothing changed (the same needs as last time, or not the CPU tier).</returns>
    public HostBufferPreparation? Prepare(IEnumerable<HostBufferNeed> needs) =>
        Kind == TierKind.Cpu && Device.type == TorchSharp.DeviceType.CPU ? _pool.Prepare(needs) : null;

    internal bool Reuses(long bytes) => Kind == TierKind.Cpu && Device.type == TorchSharp.DeviceType.CPU && bytes >= RegisterInPlaceBytes;

    /// <summary>Holds <paramref name="bytes"/> for a lease or throws (the pool's way to the budget).</summary>
    internal void Hold(long bytes, string what) => Reserve(bytes, what);

    /// <summary>A lease gives back a kept-size buffer: false when the caller must free it now.</summary>
    internal bool Return(Tensor tensor, long bytes, Action? free, int generation) => _pool.Return(tensor, free, bytes, generation);

    /// <summary>Frees every kept buffer and forgets what was prepared (a job's end: the tier then holds only what leases hold).</summary>
    public void Trim() => _pool.Trim();

    protected override void OnBudgetChanged() => _pool.FreeUntilFits(0);

    /// <summary>Stops the preparing worker and frees the kept buffers; what leases hold is theirs to free.</summary>
    public void Dispose()
    {
        _pool.Dispose();
        _arena?.Dispose();
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
