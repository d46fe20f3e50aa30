using ActorInfer.Actors.Scheduling;

namespace ActorInfer.Actors.Tests;

/// <summary>A lower-priority model's tensor thread takes its nice value; the threads it starts (CPU attention's workers) inherit it.</summary>
public sealed class HostNiceTests
{
    [Fact]
    public void A_thread_takes_the_nice_value_once_and_the_threads_it_starts_inherit_it()
    {
        var process = HostNice.Current();
        int entered = -1, again = -1, child = -1, other = -1;
        var thread = new Thread(() =>
        {
            var nice = new HostNice(process + 5);
            nice.Enter();
            entered = HostNice.Current();
            nice.Enter();
            again = HostNice.Current();
            var started = new Thread(() => child = HostNice.Current());
            started.Start();
            started.Join();
        });
        thread.Start();
        thread.Join();
        var elsewhere = new Thread(() => other = HostNice.Current());
        elsewhere.Start();
        elsewhere.Join();
        Assert.Equal(process + 5, entered);
        Assert.Equal(process + 5, again);
        Assert.Equal(process + 5, child);
        // Only that thread and its children: another thread keeps the process's value.
        Assert.Equal(process, other);
        Assert.Equal(process, HostNice.Current());
    }

    [Fact]
    public void Zero_leaves_the_thread_as_it_is()
    {
        var process = HostNice.Current();
        var seen = -1;
        var thread = new Thread(() =>
        {
            new HostNice(0).Enter();
            seen = HostNice.Current();
        });
        thread.Start();
        thread.Join();
        Assert.Equal(process, seen);
    }
}
