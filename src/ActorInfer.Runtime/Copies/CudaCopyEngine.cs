using System.Collections.Concurrent;
using ActorInfer.Runtime.Cuda;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Copies;

/// <summary>
/// Copies on two non-blocking CUDA streams (loads and stores), ordered against libtorch's compute stream with
/// events. Nothing here blocks the host except <see cref="ICopyTicket.Wait"/>.
/// </summary>
public sealed class CudaCopyEngine : ICopyEngine
{
    private readonly IntPtr _loadStream = CudaRuntime.CreateStream();
    private readonly IntPtr _storeStream = CudaRuntime.CreateStream();
    private readonly ConcurrentBag<IntPtr> _freeEvents = [];
    // Events of tickets nobody waited on never return to the pool; all are destroyed with the engine.
    private readonly ConcurrentBag<IntPtr> _allEvents = [];
    private bool _disposed;

    public static bool IsAvailable => cuda.is_available();

    public ICopyTicket CopyAsync(Tensor destination, Tensor source, CopyDirection direction)
    {
        var stream = StreamFor(direction);
        Issue(destination, source, stream);
        return Mark(stream);
    }

    public void BeforeCompute(ICopyTicket ticket) => CudaRuntime.Wait(CudaRuntime.LegacyDefaultStream, ((Ticket)ticket).Event);

    public ICopyTicket AfterCompute() => Mark(CudaRuntime.LegacyDefaultStream);

    public ICopyTicket CopyAfter(ICopyTicket dependency, Tensor destination, Tensor source, CopyDirection direction)
    {
        var stream = StreamFor(direction);
        CudaRuntime.Wait(stream, ((Ticket)dependency).Event);
        Issue(destination, source, stream);
        return Mark(stream);
    }

    private IntPtr StreamFor(CopyDirection direction) => direction == CopyDirection.Load ? _loadStream : _storeStream;

    private static void Issue(Tensor destination, Tensor source, IntPtr stream)
    {
        var bytes = destination.NumberOfElements * destination.ElementSize;
        if (source.NumberOfElements * source.ElementSize != bytes || source.dtype != destination.dtype)
            throw new ArgumentException($"copy between tensors of different sizes or types: {source.dtype}{Shape(source)} -> {destination.dtype}{Shape(destination)}");
        if (!source.is_contiguous() || !destination.is_contiguous())
            throw new ArgumentException("asynchronous copies need contiguous tensors");
        CudaRuntime.CopyAsync(TensorPointers.Data(destination), TensorPointers.Data(source), bytes, stream);
    }

    private static string Shape(Tensor t) => "[" + string.Join(", ", t.shape) + "]";

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
        CudaRuntime.SynchronizeStream(_loadStream);
        CudaRuntime.SynchronizeStream(_storeStream);
        CudaRuntime.DestroyStream(_loadStream);
        CudaRuntime.DestroyStream(_storeStream);
        foreach (var e in _allEvents) CudaRuntime.DestroyEvent(e);
    }

    /// <summary>An event recorded after the copy; returned to the pool once the host has seen it complete.</summary>
    private sealed class Ticket(CudaCopyEngine owner, IntPtr evt) : ICopyTicket
    {
        private int _returned;
        public IntPtr Event { get; } = evt;

        public void Wait()
        {
            CudaRuntime.Synchronize(Event);
            if (Interlocked.Exchange(ref _returned, 1) == 0 && !owner._disposed) owner._freeEvents.Add(Event);
        }
    }
}
