using System.Diagnostics;
using ActorInfer.Model.Layers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tiers;

/// <summary>
/// The CPU tier's large buffers that no lease holds: those freed by leases, kept for the next lease of their shape
/// (paging a buffer in and locking it again costs more than the copies it serves), and those a background worker
/// prepares for the next block (<see cref="Prepare"/>), so that its allocations find them ready instead of page-locking
/// them on the tensor thread. What it keeps and what the worker is making count with what leases hold against the
/// tier's budget. A lease asking for a shape whose buffer is being made waits for it; one whose buffer is only queued
/// takes it off the queue and makes its own: a buffer is never counted twice. Buffers that the current needs do not
/// want (spares: an earlier policy's) stay kept while the budget has room, for a policy that wants them again; they go,
/// largest first, only when the room is needed (by the worker, off the tensor thread, for a wanted buffer; or by an
/// allocation), or when the budget falls. Unregistering tens of gigabytes takes seconds and holds up the copies and
/// kernels issued meanwhile, so it is not done for a policy that does not need the room.
/// </summary>
internal sealed class HostBufferPool : IDisposable
{
    private readonly MemoryTier _tier;
    // Guards everything below; lock order: this, then the tier's own (BytesHeld, Hold). Waits for the worker use it.
    private readonly object _gate = new();
    private readonly KeptBuffers _kept = new();
    private readonly Dictionary<string, int> _leased = [];
    private readonly Dictionary<string, int> _making = [];
    private readonly Dictionary<string, int> _queued = [];
    private readonly List<string> _order = [];
    // Buffers the worker frees (spares whose room a wanted buffer needs): unregistering tens of gigabytes takes seconds.
    private readonly Queue<HostBuffer> _releasing = new();
    private Dictionary<string, WantedBuffer>? _wanted;
    private long _makingBytes, _releasingBytes;
    private int _generation;
    private Thread? _worker;
    private bool _disposed;
    private readonly HostBufferCounters _counters = new();

    public HostBufferPool(MemoryTier tier) => _tier = tier;

    internal static string KeyOf(long[] shape, ScalarType dtype) => $"{dtype}[{string.Join(",", shape)}]";

    /// <summary>Bytes of buffers kept ready (not held by any lease).</summary>
    public long KeptBytes
    {
        get { lock (_gate) return _kept.Bytes; }
    }

    /// <summary>Bytes the worker is making or freeing now: memory the tier takes that is neither kept nor leased.</summary>
    public long InTransitBytes
    {
        get { lock (_gate) return _makingBytes + _releasingBytes; }
    }

    /// <summary>Whether the worker has nothing queued, nothing in hand and nothing to free.</summary>
    public bool Idle
    {
        get { lock (_gate) return _worker is null; }
    }

    public HostBufferCounts Counts
    {
        get { lock (_gate) return _counters.Counts; }
    }

    private long Taken => _kept.Bytes + _makingBytes + _releasingBytes;

    private bool Fits(long bytes) => _tier.BytesHeld + Taken + bytes <= _tier.BudgetBytes;

    /// <summary>
    /// A kept buffer of this shape, held by a new lease (<paramref name="what"/>) against the budget; or null, the lease's
    /// bytes held, for the caller to make the buffer (<see cref="Made"/>, or <see cref="Abandon"/> when that fails).
    /// </summary>
    /// <param name="generation">The set of needs the lease belongs to, for <see cref="Return"/>.</param>
    public (Tensor Tensor, Action? Free)? Acquire(long[] shape, ScalarType dtype, long bytes, string what, out int generation)
    {
        var key = KeyOf(shape, dtype);
        lock (_gate)
        {
            while (true)
            {
                if (_kept.Take(key, bytes) is { } kept)
                {
                    try
                    {
                        _tier.Hold(bytes, what);
                    }
                    catch
                    {
                        _kept.Untake(key, kept, bytes);
                        throw;
                    }
                    _counters.Served(kept.Prepared, bytes);
                    Add(_leased, key, 1);
                    generation = _generation;
                    return (kept.Tensor, kept.Free);
                }
                // Only queued: the worker is busy with others, so this thread makes it (in parallel with the worker).
                if (Count(_queued, key) > 0)
                {
                    Add(_queued, key, -1);
                    break;
                }
                // Being made: it lands soon, partly made already.
                if (Count(_making, key) > 0)
                {
                    Monitor.Wait(_gate);
                    continue;
                }
                break;
            }
            FreeKeptUntilFits(bytes);
            // Buffers in the worker's hands count too: nothing more is queued, and they land (and go) before this is held.
            while (!Fits(bytes) && _makingBytes + _releasingBytes > 0)
            {
                ClearQueue();
                Monitor.Wait(_gate);
                FreeKeptUntilFits(bytes);
            }
            _tier.Hold(bytes, what);
            Add(_leased, key, 1);
            generation = _generation;
            return null;
        }
    }

    /// <summary>The caller made the buffer that <see cref="Acquire"/> left to it, taking these stopwatch ticks.</summary>
    public void Made(long bytes, long touchTicks, long registerTicks)
    {
        lock (_gate) _counters.MadeInline(bytes, touchTicks, registerTicks);
    }

    /// <summary>The caller could not make the buffer that <see cref="Acquire"/> left to it (it gives the bytes back itself).</summary>
    public void Abandon(long[] shape, ScalarType dtype)
    {
        lock (_gate) Add(_leased, KeyOf(shape, dtype), -1);
    }

    /// <summary>
    /// A lease gives its buffer back (its bytes still held): kept for the next lease of its shape where it fits beside
    /// what is held, and where the needs declared since the lease began (if any) still want it. False when the caller
    /// must free it now.
    /// </summary>
    public bool Return(Tensor tensor, Action? free, long bytes, int generation)
    {
        var key = KeyOf(tensor.Dims(), tensor.dtype);
        lock (_gate)
        {
            Add(_leased, key, -1);
            if (_disposed) return false;
            // A block of an earlier policy's buffer stays too, as a spare, while the budget has room.
            if (_tier.BytesHeld + Taken > _tier.BudgetBytes) return false;
            _kept.Push(key, new HostBuffer(tensor, free, bytes, Prepared: false));
            Monitor.PulseAll(_gate);
            return true;
        }
    }

    /// <summary>
    /// The buffers the next block will take: from now on kept buffers serve them, and those missing are made by a
    /// background worker as far as the budget allows (what leases of the same shape hold comes back when they end, and
    /// counts as there), the worker freeing spares, largest first, where a wanted buffer needs their room. Spares that
    /// no buffer needs room from stay kept. A set equal to the last one changes nothing.
    /// </summary>
    /// <returns>The bytes wanted and the bytes queued for the worker; null when the set is the last one.</returns>
    public HostBufferPreparation? Prepare(IEnumerable<HostBufferNeed> needs)
    {
        var wanted = new Dictionary<string, WantedBuffer>();
        var order = new List<string>();
        foreach (var need in needs)
        {
            if (need.Count <= 0 || !_tier.Reuses(need.Bytes)) continue;
            var key = KeyOf(need.Shape, need.DType);
            if (wanted.TryGetValue(key, out var before)) wanted[key] = before with { Count = before.Count + need.Count };
            else
            {
                wanted[key] = new WantedBuffer(need.Shape, need.DType, need.Bytes, need.Count);
                order.Add(key);
            }
        }
        lock (_gate)
        {
            if (_disposed) return null;
            if (_wanted is { } current && current.Count == wanted.Count &&
                current.All(w => wanted.TryGetValue(w.Key, out var other) && other.Count == w.Value.Count)) return null;
            _generation++;
            _wanted = wanted;
            ClearQueue();
            foreach (var key in order)
            {
                var missing = wanted[key].Count - _kept.Count(key) - Count(_making, key) - Count(_leased, key);
                if (missing <= 0) continue;
                _queued[key] = missing;
                _order.Add(key);
            }
            StartWorker();
            Monitor.PulseAll(_gate);
            return new HostBufferPreparation(wanted.Values.Sum(w => w.Bytes * w.Count), _queued.Sum(q => wanted[q.Key].Bytes * q.Value));
        }
    }

    /// <summary>Frees kept buffers, largest first, until <paramref name="bytes"/> more fit beside what the tier takes.</summary>
    public void FreeUntilFits(long bytes)
    {
        lock (_gate) FreeKeptUntilFits(bytes);
    }

    /// <summary>Frees every kept buffer, forgets the needs and what was queued; buffers being made are freed as they land.</summary>
    public void Trim()
    {
        lock (_gate)
        {
            _generation++;
            _wanted = null;
            ClearQueue();
            while (_kept.Bytes > 0) FreeLargestKept();
            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>Stops the worker (after what it has in hand) and frees everything kept; what leases hold is theirs to free.</summary>
    public void Dispose()
    {
        Thread? worker;
        lock (_gate)
        {
            _disposed = true;
            ClearQueue();
            worker = _worker;
            Monitor.PulseAll(_gate);
        }
        worker?.Join();
        lock (_gate)
        {
            while (_kept.Bytes > 0) FreeLargestKept();
            while (_releasing.TryDequeue(out var left)) left.FreeNow();
            _releasingBytes = 0;
        }
    }

    private void StartWorker()
    {
        if (_worker is not null || (_order.Count == 0 && _releasing.Count == 0)) return;
        _worker = new Thread(Work) { IsBackground = true, Name = "CPU tier: host buffers" };
        _worker.Start();
    }

    /// <summary>The worker: frees what was let go, then makes the queued buffers one by one while they fit; ends when idle.</summary>
    private void Work()
    {
        while (true)
        {
            HostBuffer? release = null;
            (string Key, WantedBuffer Want, int Generation)? job = null;
            lock (_gate)
            {
                if (_releasing.TryDequeue(out var next)) release = next;
                else if (NextQueued() is { } queued)
                {
                    if (!Fits(queued.Want.Bytes))
                    {
                        // A spare's room: freed first (the loop frees it before making anything).
                        if (_kept.SpareKey(_wanted) is { } spare)
                        {
                            Release(_kept.Pop(spare));
                            continue;
                        }
                        // The budget holds no more: the block makes the rest itself, freeing what it must.
                        ClearQueue();
                        continue;
                    }
                    Add(_queued, queued.Key, -1);
                    Add(_making, queued.Key, 1);
                    _makingBytes += queued.Want.Bytes;
                    job = (queued.Key, queued.Want, _generation);
                }
                else
                {
                    _worker = null;
                    Monitor.PulseAll(_gate);
                    return;
                }
            }
            if (release is not null)
            {
                var began = Stopwatch.GetTimestamp();
                Exception? failure = null;
                try
                {
                    release.FreeNow();
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    failure = ex;
                }
                lock (_gate)
                {
                    _releasingBytes -= release.Bytes;
                    _counters.Released(release.Bytes, Stopwatch.GetTimestamp() - began);
                    // Reported with the counts, as a failure to prepare is (the buffer's memory itself is freed).
                    if (failure is not null) _counters.Failed(failure.Message);
                    Monitor.PulseAll(_gate);
                }
            }
            else if (job is { } j) Make(j.Key, j.Want, j.Generation);
        }
    }

    /// <summary>Makes one queued buffer (off the gate) and keeps it, unless the needs or the budget changed meanwhile.</summary>
    private void Make(string key, WantedBuffer want, int generation)
    {
        var began = Stopwatch.GetTimestamp();
        MemoryTier.Made? made = null;
        Exception? failure = null;
        try
        {
            made = _tier.Make(want.Shape, want.DType, want.Bytes);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            failure = ex;
        }
        lock (_gate)
        {
            Add(_making, key, -1);
            _makingBytes -= want.Bytes;
            if (made is { } m)
            {
                _counters.Prepared(want.Bytes, Stopwatch.GetTimestamp() - began);
                var stillWanted = !_disposed && _wanted is { } wanted && wanted.TryGetValue(key, out var w) &&
                                  (generation == _generation || _kept.Count(key) + Count(_leased, key) < w.Count);
                var buffer = new HostBuffer(m.Tensor, m.Free, want.Bytes, Prepared: true);
                if (stillWanted && Fits(want.Bytes)) _kept.Push(key, buffer);
                else Release(buffer);
            }
            else
            {
                // Reported with the counts (the block's log says it); the block makes what it needs itself.
                _counters.Failed(failure?.Message);
                ClearQueue();
            }
            Monitor.PulseAll(_gate);
        }
    }

    private (string Key, WantedBuffer Want)? NextQueued()
    {
        foreach (var key in _order)
            if (Count(_queued, key) > 0 && _wanted is { } wanted && wanted.TryGetValue(key, out var want))
                return (key, want);
        return null;
    }

    private void ClearQueue()
    {
        _queued.Clear();
        _order.Clear();
    }

    private void Release(HostBuffer buffer)
    {
        _releasing.Enqueue(buffer);
        _releasingBytes += buffer.Bytes;
        StartWorker();
    }

    /// <summary>Frees kept buffers until <paramref name="bytes"/> more fit: spares first, then wanted ones, largest first.</summary>
    private void FreeKeptUntilFits(long bytes)
    {
        while (_kept.Bytes > 0 && !Fits(bytes)) _kept.Pop(_kept.SpareKey(_wanted) ?? _kept.LargestKey()).FreeNow();
    }

    private void FreeLargestKept() => _kept.Pop(_kept.LargestKey()).FreeNow();

    private static int Count(Dictionary<string, int> counts, string key) => counts.GetValueOrDefault(key);

    private static void Add(Dictionary<string, int> counts, string key, int delta)
    {
        var value = counts.GetValueOrDefault(key) + delta;
        if (value == 0) counts.Remove(key);
        else counts[key] = value;
    }
}
