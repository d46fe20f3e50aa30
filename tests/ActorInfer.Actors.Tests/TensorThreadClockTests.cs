using System.Collections.Concurrent;
using System.Diagnostics;
using ActorInfer.Actors.Diagnostics;

namespace ActorInfer.Actors.Tests;

public class TensorThreadClockTests
{
    /// <summary>A message that ran at least the threshold is told to whoever listens (a run's timeline); a quick one is not.</summary>
    [Fact]
    public void A_slow_message_is_told_with_its_duration_and_a_quick_one_is_not()
    {
        var told = new ConcurrentQueue<(string What, double Ms)>();
        TensorThreadClock.Slow = (what, ms) => told.Enqueue((what, ms));
        try
        {
            var longAgo = Stopwatch.GetTimestamp() - Stopwatch.Frequency;
            TensorThreadClock.Record("clock test: slow", longAgo);
            TensorThreadClock.Record("clock test: quick", Stopwatch.GetTimestamp());
        }
        finally
        {
            TensorThreadClock.Slow = null;
        }
        var mine = told.Where(t => t.What.StartsWith("clock test")).ToList();
        var slow = Assert.Single(mine);
        Assert.Equal("clock test: slow", slow.What);
        Assert.InRange(slow.Ms, 1000, 60_000);
    }

    /// <summary>
    /// Each model of a node has a tensor thread of its own: what one runs, or ran, is told of that thread only, so that a
    /// stall or a slow honour is not blamed on the other model's work.
    /// </summary>
    [Fact]
    public void Each_tensor_thread_is_told_of_its_own_messages_only()
    {
        var from = Stopwatch.GetTimestamp();
        using var begun = new ManualResetEventSlim();
        using var checkedNow = new ManualResetEventSlim();
        int a = 0, b = 0;
        var first = new Thread(() =>
        {
            a = Environment.CurrentManagedThreadId;
            TensorThreadClock.Begin("clock test: a's message", Stopwatch.GetTimestamp());
            begun.Set();
            checkedNow.Wait(TimeSpan.FromSeconds(10));
            TensorThreadClock.Record("clock test: a's message", from);
        });
        var second = new Thread(() =>
        {
            b = Environment.CurrentManagedThreadId;
            TensorThreadClock.Record("clock test: b's message", Stopwatch.GetTimestamp());
        });
        first.Start();
        Assert.True(begun.Wait(TimeSpan.FromSeconds(10)));
        second.Start();
        second.Join();
        var between = Stopwatch.GetTimestamp();

        Assert.StartsWith("runs clock test: a's message for ", TensorThreadClock.Now(a));
        Assert.StartsWith("is idle; it last ran clock test: b's message, ", TensorThreadClock.Now(b));
        Assert.Equal("clock test: b's message", TensorThreadClock.Longest(from, between, b)?.What);
        Assert.Null(TensorThreadClock.Longest(from, between, a));
        checkedNow.Set();
        first.Join();
        Assert.Equal("clock test: a's message", TensorThreadClock.Longest(from, Stopwatch.GetTimestamp(), a)?.What);
        Assert.StartsWith("is idle; it last ran clock test: a's message, ", TensorThreadClock.Now(a));
        Assert.Equal("has run nothing", TensorThreadClock.Now(-1));
    }
}
