using System.Collections.Concurrent;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.CpuAttention;

/// <summary>
/// A dedicated thread that computes CPU attention, one job at a time in submission order, so that the thread
/// issuing GPU work never waits for it until it needs a job's result. Each job runs in its own dispose scope (the
/// scopes are per thread): a job allocates nothing that outlives it and writes only into buffers its submitter
/// owns. With a kernel that splits rows over threads of its own, the worker owns that pool too.
/// </summary>
public sealed class CpuAttentionWorker : IDisposable
{
    private readonly BlockingCollection<(Action Job, TaskCompletionSource Done)> _queue = new();
    private readonly Thread _thread;

    public CpuAttentionWorker(CpuAttentionKernel kernel)
    {
        Kernel = kernel;
        Pool = kernel.Threads > 0 ? new TorchThreadPool(kernel.Threads, "ActorInfer CPU attention") : null;
        _thread = new Thread(Work) { IsBackground = true, Name = "ActorInfer CPU attention" };
        _thread.Start();
    }

    public CpuAttentionKernel Kernel { get; }

    /// <summary>The threads the kernel splits rows over (null when libtorch's intra-op threads do).</summary>
    public TorchThreadPool? Pool { get; }

    /// <summary>Queues <paramref name="job"/>; the task completes when it has run (faulted when it threw).</summary>
    public Task Submit(Action job)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _queue.Add((job, done));
        return done.Task;
    }

    private void Work()
    {
        foreach (var (job, done) in _queue.GetConsumingEnumerable())
        {
            try
            {
                using (NewDisposeScope()) job();
                done.SetResult();
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        }
    }

    /// <summary>Runs the jobs already queued, then stops the thread.</summary>
    public void Dispose()
    {
        if (_queue.IsAddingCompleted) return;
        _queue.CompleteAdding();
        _thread.Join();
        _queue.Dispose();
        Pool?.Dispose();
    }
}
