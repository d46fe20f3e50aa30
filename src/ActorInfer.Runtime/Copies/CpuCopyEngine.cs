using ActorInfer.Model.Layers;
using System.Collections.Concurrent;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Copies;

/// <summary>
/// Copies on one background worker thread, in issue order. Compute runs on the caller's thread, so
/// <see cref="AfterCompute"/> is already complete and <see cref="BeforeCompute"/> simply waits for the copy.
/// A failed copy surfaces when its ticket is waited for.
/// </summary>
public sealed class CpuCopyEngine : ICopyEngine
{
    private readonly BlockingCollection<(CopyTicket Ticket, ICopyTicket? After, Tensor Destination, Tensor Source)> _queue = new();
    private readonly Thread _worker;
    private int _issued;

    public CpuCopyEngine()
    {
        _worker = new Thread(Work) { IsBackground = true, Name = "ActorInfer CPU copy engine" };
        _worker.Start();
    }

    /// <summary>Copies issued so far (for tests and metrics).</summary>
    public int Issued => Volatile.Read(ref _issued);

    public ICopyTicket CopyAsync(Tensor destination, Tensor source, CopyDirection direction) =>
        Enqueue(null, destination, source);

    public ICopyTicket CopyAfter(ICopyTicket dependency, Tensor destination, Tensor source, CopyDirection direction) =>
        Enqueue(dependency, destination, source);

    public void BeforeCompute(ICopyTicket ticket) => ticket.Wait();

    public ICopyTicket AfterCompute() => CopyTicket.Completed;

    private CopyTicket Enqueue(ICopyTicket? after, Tensor destination, Tensor source)
    {
        if (!destination.Dims().SequenceEqual(source.Dims()) || destination.dtype != source.dtype)
            throw new ArgumentException(
                $"copy needs the same shape and dtype: [{string.Join(", ", source.Dims())}] {source.dtype} into [{string.Join(", ", destination.Dims())}] {destination.dtype}");
        var ticket = new CopyTicket();
        Interlocked.Increment(ref _issued);
        _queue.Add((ticket, after, destination, source));
        return ticket;
    }

    private void Work()
    {
        // Compute's outputs are made in inference mode (see BlockStep.RunCurrent), and a copy may write into a view of one.
        using var inference = inference_mode();
        foreach (var (ticket, after, destination, source) in _queue.GetConsumingEnumerable())
        {
            try
            {
                after?.Wait();
                destination.copy_(source);
                ticket.Complete(null);
            }
            catch (Exception e)
            {
                ticket.Complete(e);
            }
        }
    }

    public void Dispose()
    {
        _queue.CompleteAdding();
        _worker.Join();
        _queue.Dispose();
    }

    private sealed class CopyTicket : ICopyTicket
    {
        private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public static CopyTicket Completed { get; } = CreateCompleted();

        public Task Task => _done.Task;

        public void Complete(Exception? error)
        {
            if (error is null) _done.SetResult();
            else _done.SetException(error);
        }

        public void Wait() => _done.Task.GetAwaiter().GetResult();

        private static CopyTicket CreateCompleted()
        {
            var t = new CopyTicket();
            t.Complete(null);
            return t;
        }
    }
}
