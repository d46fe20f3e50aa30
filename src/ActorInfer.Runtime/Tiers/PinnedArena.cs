using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tiers;

/// <summary>
/// One block of host memory of one element type, touched and (on CUDA) page-locked once, from which the CPU tier carves
/// its large buffers of that type: a buffer then costs no page faults and no registration with the driver, which for the
/// tens of gigabytes of a low-budget policy's CPU cache take from 4 to 18 seconds on the tensor thread (H100 machines,
/// one loan to the next). Carved ranges go back to it, never to the system. First fit over the ranges given back,
/// coalesced; a range that was never handed out is still zero, one given back is zeroed again when carved. Thread-safe.
/// </summary>
internal sealed class PinnedArena : IDisposable
{
    /// <summary>Ranges start and end on this many bytes (huge pages where the kernel gives them).</summary>
    internal const long AlignmentBytes = 2L << 20;

    private readonly Tensor _block;
    private readonly Action? _free;
    private readonly long _unit;
    private readonly object _gate = new();
    // Ranges given back, offset (elements) -> length (elements), and the start of what was never handed out.
    private readonly SortedDictionary<long, long> _returned = [];
    private long _top;
    private bool _disposed;

    public PinnedArena(Tensor block, Action? free)
    {
        if (block.dim() != 1) throw new ArgumentException("an arena is one flat block", nameof(block));
        _block = block;
        _free = free;
        _unit = Math.Max(1, AlignmentBytes / block.ElementSize);
    }

    public ScalarType DType => _block.dtype;

    public long Bytes => _block.NumberOfElements * _block.ElementSize;

    /// <summary>Bytes handed out and not given back.</summary>
    public long CarvedBytes
    {
        get
        {
            lock (_gate) return (_top - _returned.Values.Sum()) * _block.ElementSize;
        }
    }

    /// <summary>A zeroed buffer of this shape and what gives it back; null when no range is free for it.</summary>
    public (Tensor Tensor, Action GiveBack)? Carve(long[] shape)
    {
        var elements = shape.Aggregate(1L, (a, b) => a * b);
        if (elements <= 0) return null;
        var length = (elements + _unit - 1) / _unit * _unit;
        long offset;
        bool clean;
        lock (_gate)
        {
            if (_disposed) throw new ObjectDisposedException(nameof(PinnedArena));
            if (TakeReturned(length) is { } at) (offset, clean) = (at, false);
            else if (_top + length <= _block.NumberOfElements) (offset, clean, _top) = (_top, true, _top + length);
            else return null;
        }
        using var flat = _block.narrow(0, offset, elements);
        var tensor = flat.view(shape);
        tensor.DetachFromDisposeScope();
        if (!clean) tensor.zero_();
        var given = 0;
        return (tensor, () =>
        {
            if (Interlocked.Exchange(ref given, 1) == 0) GiveBack(offset, length);
        });
    }

    private long? TakeReturned(long length)
    {
        foreach (var (offset, free) in _returned)
        {
            if (free < length) continue;
            _returned.Remove(offset);
            if (free > length) _returned[offset + length] = free - length;
            return offset;
        }
        return null;
    }

    private void GiveBack(long offset, long length)
    {
        lock (_gate)
        {
            if (_disposed) return;
            // Coalesce with the range just before and the one just after.
            var before = _returned.Where(r => r.Key + r.Value == offset).Select(r => (long?)r.Key).FirstOrDefault();
            if (before is { } b)
            {
                _returned.Remove(b);
                length += offset - b;
                offset = b;
            }
            if (_returned.Remove(offset + length, out var after)) length += after;
            _returned[offset] = length;
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
        }
        _free?.Invoke();
        _block.Dispose();
    }
}
