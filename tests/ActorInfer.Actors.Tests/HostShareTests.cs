using ActorInfer.Actors.Scheduling;

namespace ActorInfer.Actors.Tests;

/// <summary>
/// A lower-priority model's tensor thread takes its nice value and thread cap; the threads it starts (CPU attention's
/// workers) inherit the nice value; other threads keep theirs.
/// </summary>
public sealed class HostShareTests
{
    [Fact]
    public void A_thread_takes_the_nice_value_and_the_thread_cap_once_and_the_threads_it_starts_inherit_the_nice_value()
    {
        var process = HostShare.CurrentNice();
        int entered = -1, again = -1, child = -1, other = -1, threads = -1, otherThreads = -1, fresh = -1;
        var before = new Thread(() => fresh = TorchSharp.torch.get_num_threads());
        before.Start();
        before.Join();
        var thread = new Thread(() =>
        {
            var share = new HostShare(5, threads: 1);
            share.Enter();
            entered = HostShare.CurrentNice();
            threads = TorchSharp.torch.get_num_threads();
            share.Enter();
            again = HostShare.CurrentNice();
            var started = new Thread(() => child = HostShare.CurrentNice());
            started.Start();
            started.Join();
        });
        thread.Start();
        thread.Join();
        var elsewhere = new Thread(() =>
        {
            other = HostShare.CurrentNice();
            otherThreads = TorchSharp.torch.get_num_threads();
        });
        elsewhere.Start();
        elsewhere.Join();
        Assert.Equal(process + 5, entered);
        Assert.Equal(process + 5, again);
        Assert.Equal(process + 5, child);
        Assert.Equal(1, threads);
        // Only that thread and its children: another thread keeps the process's nice value and libtorch's thread count.
        Assert.Equal(process, other);
        Assert.Equal(process, HostShare.CurrentNice());
        Assert.Equal(fresh, otherThreads);
    }

    [Fact]
    public void Zero_leaves_the_thread_as_it_is()
    {
        var process = HostShare.CurrentNice();
        var seen = -1;
        var thread = new Thread(() =>
        {
            new HostShare(0).Enter();
            seen = HostShare.CurrentNice();
        });
        thread.Start();
        thread.Join();
        Assert.Equal(process, seen);
    }
}
