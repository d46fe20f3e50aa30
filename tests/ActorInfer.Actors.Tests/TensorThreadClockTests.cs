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
}
