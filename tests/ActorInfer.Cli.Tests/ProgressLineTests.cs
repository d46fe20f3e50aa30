namespace ActorInfer.Cli.Tests;

/// <summary>`generate`'s progress line: tokens per second so far and the time left at the rate of requests so far.</summary>
public sealed class ProgressLineTests
{
    [Theory]
    // 4 of 16 requests in 10 s: 12 left at 2.5 s each = 30 s; 640 tokens / 10 s = 64 tokens/s.
    [InlineData(4, 16, 640, 10.0, "generate: 4/16 (25%) after 10.0 s, 64.0 tokens/s, about 30 s left")]
    // 1 of 100 in 80 s: 99 x 80 s = 7920 s, over 90 minutes: 2.2 hours; 32 tokens / 80 s = 0.4 tokens/s.
    [InlineData(1, 100, 32, 80.0, "generate: 1/100 (1%) after 80.0 s, 0.4 tokens/s, about 2.2 h left")]
    // 10 of 20 in 100 s: 100 s left, shown in minutes (rounded up).
    [InlineData(10, 20, 1000, 100.0, "generate: 10/20 (50%) after 100.0 s, 10.0 tokens/s, about 2 min left")]
    [InlineData(0, 8, 0, 1.0, "generate: 0/8 (0%) after 1.0 s, 0.0 tokens/s, time left not known yet")]
    [InlineData(8, 8, 256, 4.0, "generate: 8/8 (100%) after 4.0 s, 64.0 tokens/s, done")]
    public void The_line_says_tokens_per_second_and_the_time_left(int done, int total, long tokens, double seconds, string expected) =>
        Assert.Equal(expected, ProgressReporter.Line("generate", done, total, tokens, TimeSpan.FromSeconds(seconds)));
}
