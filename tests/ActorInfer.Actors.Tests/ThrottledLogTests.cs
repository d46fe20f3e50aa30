using ActorInfer.Actors.Diagnostics;

namespace ActorInfer.Actors.Tests;

public sealed class ThrottledLogTests
{
    [Fact]
    public void A_repeating_failure_is_logged_first_then_at_doubling_intervals_with_the_count_between_and_afresh_after_recovery()
    {
        var now = new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);
        var lines = new List<string>();
        var log = new ThrottledLog(lines.Add, TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(20), () => now);

        // One failure a second for 60 s: logged at 0, 5, 15, 35 and 55 s (intervals 5, 10, 20, then the longest, 20).
        for (var second = 0; second < 60; second++)
        {
            now = now.AddSeconds(second == 0 ? 0 : 1);
            log.Failed("folder unreadable");
        }
        Assert.Equal(["folder unreadable", "folder unreadable (and 4 more times since the last report)",
            "folder unreadable (and 9 more times since the last report)", "folder unreadable (and 19 more times since the last report)",
            "folder unreadable (and 19 more times since the last report)"], lines);
        Assert.Equal(4, log.Unlogged);

        log.Recovered();
        now = now.AddSeconds(1);
        log.Failed("again");
        Assert.Equal("again", lines[^1]);
    }
}
