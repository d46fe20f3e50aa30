using ActorInfer.Model.Layers;
using System.Collections.Concurrent;
using ActorInfer.Runtime.Cuda;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Copies;

/// <summary>
/// Copies on three non-blocking CUDA streams (weights in, other loads, stores), ordered against libtorch's compute
/// stream with events. Nothing here blocks the host except <see cref="ICopyTicket.Wait"/>.
/// Every copy starts after the compute queued before it was issued: libtorch's caching allocator hands a buffer
/// freed by compute to the next allocation at once (its uses are ordered on the compute stream only), so a copy on
/// another stream into a fresh buffer, say the next layer's weights into the buffers of a layer whose kernels are
/// still queued, would otherwise overwrite memory those kernels read.
/// </summary>
public sealed class CudaCopyEngine : ICopyEngine
{
    private readonly IntPtr _weightStream = CudaRuntime.CreateStream();
    private readonly IntPtr _loadStream = CudaRuntime.CreateStream();
    private readonly IntPtr _storeStream = CudaRuntime.CreateStream();
    private readonly ConcurrentBag<IntPtr> _freeEvents = [];
    // Events of tickets nobody waited on never return to the pool; all are destroyed with the engine.
    private readonly ConcurrentBag<IntPtr> _allEvents = [];
    private bool _disposed;
    // Recorded on the compute stream before each copy; a stream's wait takes the event as recorded then, so one will do.
    private readonly IntPtr _computeMark = CudaRuntime.CreateEvent();
    private readonly Lock _markGate = new();

    public static bool IsAvailable => cuda.is_available();

    /// <summary>When set and active, every copy is recorded on its stream's lane.</summary>
    public CudaTimeline? Timeline { get; set; }

    public ICopyTicket CopyAsync(Tensor destination, Tensor source, CopyDirection direction)
    {
        var stream = StreamFor(direction);
        AfterQueuedCompute(stream);
        Traced(destination, source, stream, direction);
        return Mark(stream);
    }

    private void Traced(Tensor destination, Tensor source, IntPtr stream, CopyDirection direction)
    {
        var (lane, verb) = direction switch
        {
            CopyDirection.LoadWeights => ("weight stream", "load"),
            CopyDirection.Load => ("load stream", "load"),
            _ => ("store stream", "store"),
        };
        using var span = Timeline?.DeviceSpan(lane, $"{verb} {destination.NumberOfElements * destination.ElementSize / 1e6:F1} MB", stream);
        Issue(destination, source, stream);
    }

    public void BeforeCompute(ICopyTicket ticket)
    {
        // Compute is in order with itself: only a copy's ticket has something to wait for.
        if (ticket is Ticket copy) CudaRuntime.Wait(CudaRuntime.ComputeStream, copy.Event);
    }

    /// <summary>
    /// The compute queued so far. Every copy already starts after the compute queued when it is issued (later than
    /// this), so as a dependency it needs no event of its own.
    /// </summary>
    public ICopyTicket AfterCompute() => ComputeSoFar.Instance;

    public ICopyTicket CopyAfter(ICopyTicket dependency, Tensor destination, Tensor source, CopyDirection direction)
    {
        var stream = StreamFor(direction);
        if (dependency is Ticket copy) CudaRuntime.Wait(stream, copy.Event);
        AfterQueuedCompute(stream);
        Traced(destination, source, stream, direction);
        return Mark(stream);
    }

    /// <summary>Makes <paramref name="stream"/>'s next work wait for the compute queued so far.</summary>
    private void AfterQueuedCompute(IntPtr stream)
    {
        lock (_markGate)
        {
            CudaRuntime.Record(_computeMark, CudaRuntime.ComputeStream);
            CudaRuntime.Wait(stream, _computeMark);
        }
    }

    private IntPtr StreamFor(CopyDirection direction) => direction switch
    {
        CopyDirection.LoadWeights => _weightStream,
        CopyDirection.Load => _loadStream,
        _ => _storeStream,
    };

    private static void Issue(Tensor destination, Tensor source, IntPtr stream)
    {
        var bytes = destination.NumberOfElements * destination.ElementSize;
        if (source.NumberOfElements * source.ElementSize != bytes || source.dtype != destination.dtype)
            throw new ArgumentException($"copy between tensors of different sizes or types: {source.dtype}{Shape(source)} -> {destination.dtype}{Shape(destination)}");
        if (source.is_contiguous() && destination.is_contiguous())
        {
            CudaRuntime.CopyAsync(ActorInfer.Model.Layers.TensorData.Pointer(destination), ActorInfer.Model.Layers.TensorData.Pointer(source), bytes, stream);
            return;
        }
        // A slice of a cache along its token axis is rows of contiguous bytes at a fixed pitch: one 2D copy.
        if (!source.Dims().SequenceEqual(destination.Dims()) || RowLayout(source) is not { } src || RowLayout(destination) is not { } dst)
            throw new ArgumentException($"asynchronous copies need contiguous tensors or row layouts: {Shape(source)} -> {Shape(destination)}");
        // A contiguous side takes the other side's rows.
        if (src.Rows == 1) src = new RowSpan(dst.RowBytes, dst.RowBytes, bytes / dst.RowBytes);
        if (dst.Rows == 1) dst = new RowSpan(src.RowBytes, src.RowBytes, bytes / src.RowBytes);
        if (src.RowBytes != dst.RowBytes || src.Rows != dst.Rows)
            throw new ArgumentException($"asynchronous copy between different row layouts: {Shape(source)} -> {Shape(destination)}");
        CudaRuntime.Copy2DAsync(ActorInfer.Model.Layers.TensorData.Pointer(destination), dst.Pitch, ActorInfer.Model.Layers.TensorData.Pointer(source), src.Pitch, src.RowBytes, src.Rows, stream);
    }

    private readonly record struct RowSpan(long RowBytes, long Pitch, long Rows);

    /// <summary>
    /// The tensor as rows: the trailing dims that are contiguous form a row; the leading dims must collapse into
    /// one with a constant stride (the pitch). Null when the tensor has no such layout.
    /// </summary>
    private static RowSpan? RowLayout(Tensor t)
    {
        var shape = t.Dims();
        var strides = t.Strides();
        var element = t.ElementSize;
        var d = shape.Length - 1;
        long inner = 1;
        while (d >= 0 && (shape[d] == 1 || strides[d] == inner))
        {
            inner *= shape[d];
            d--;
        }
        if (d < 0) return new RowSpan(inner * element, inner * element, 1);
        long rows = shape[d];
        var pitch = strides[d];
        for (var k = d - 1; k >= 0; k--)
        {
            if (shape[k] == 1) continue;
            if (strides[k] != pitch * rows) return null;
            rows *= shape[k];
        }
        return new RowSpan(inner * element, pitch * element, rows);
    }

    private static string Shape(Tensor t) => "[" + string.Join(", ", t.Dims()) + "]";

    private Ticket Mark(IntPtr stream)
    {
        if (!_freeEvents.TryTake(out var evt))
        {
            evt = CudaRuntime.CreateEvent();
            _allEvents.Add(evt);
        }
        CudaRuntime.Record(evt, stream);
        return new Ticket(this, evt);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        CudaRuntime.SynchronizeStream(_weightStream);
        CudaRuntime.SynchronizeStream(_loadStream);
        CudaRuntime.SynchronizeStream(_storeStream);
        CudaRuntime.DestroyStream(_weightStream);
        CudaRuntime.DestroyStream(_loadStream);
        CudaRuntime.DestroyStream(_storeStream);
        foreach (var e in _allEvents) CudaRuntime.DestroyEvent(e);
        CudaRuntime.DestroyEvent(_computeMark);
    }

    /// <summary>What <see cref="AfterCompute"/> gives: waiting for it on the host waits for the compute stream.</summary>
    private sealed class ComputeSoFar : ICopyTicket
    {
        public static readonly ComputeSoFar Instance = new();

        public void Wait() => CudaRuntime.SynchronizeStream(CudaRuntime.ComputeStream);
    }

    /// <summary>An event recorded after the copy; returned to the pool once the host has seen it complete.</summary>
    private sealed class Ticket(CudaCopyEngine owner, IntPtr evt) : ICopyTicket
    {
        private int _returned;
        public IntPtr Event { get; } = evt;

        public void Wait()
        {
            // Once waited, the event went back to the pool and may have been recorded again for later work.
            if (Volatile.Read(ref _returned) == 1) return;
            CudaRuntime.Synchronize(Event);
            if (Interlocked.Exchange(ref _returned, 1) == 0 && !owner._disposed) owner._freeEvents.Add(Event);
        }
    }
}
