using System.Diagnostics;
using Akka.Event;

namespace ActorInfer.Actors.Scheduling;

/// <summary>
/// Watches the running block from a timer's thread: a block that has not moved (no layer finished, no step begun) for
/// <see cref="Limit"/> is reported once per stall, with where it stands and what the tensor thread runs, so that a hang
/// can be placed. The scheduler tells it of each move; the marks are plain writes, cheap on the tensor thread.
/// </summary>
internal sealed class StallWatch : IDisposable
{
    private static readonly TimeSpan Check = TimeSpan.FromSeconds(5);
    public static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    private readonly ILoggingAdapter _log;
    private readonly Timer _timer;
    private volatile int _block;
    private volatile int _step;
    private volatile int _position;
    private long _movedAt;
    private long _reported;
    // The tensor thread of the scheduler that made the watch (each model of a node has its own).
    private readonly int _thread = Environment.CurrentManagedThreadId;

    /// <summary>Made on the scheduler's tensor thread, whose messages a stall's report names.</summary>
    public StallWatch(ILoggingAdapter log)
    {
        _log = log;
        _timer = new Timer(_ => Look(), null, Check, Check);
    }

    /// <summary>The block began <paramref name="step"/> (0: its prefill).</summary>
    public void StepBegan(int block, int step)
    {
        _block = block;
        _step = step;
        Moved();
    }

    /// <summary>A computation of the running block was sent: its position in the step.</summary>
    public void At(int position) => _position = position;

    /// <summary>A layer of the running block finished.</summary>
    public void Moved() => Interlocked.Exchange(ref _movedAt, Stopwatch.GetTimestamp());

    /// <summary>No block runs.</summary>
    public void Idle() => _block = 0;

    private void Look()
    {
        var block = _block;
        var since = Interlocked.Read(ref _movedAt);
        if (block == 0 || since == 0 || Interlocked.Read(ref _reported) == since) return;
        var still = Stopwatch.GetElapsedTime(since);
        if (still < Limit) return;
        Interlocked.Exchange(ref _reported, since);
        var step = _step;
        _log.Warning("block {0} has not moved for {1:F0} s ({2}, position {3} in the step); the tensor thread {4}",
            block, still.TotalSeconds, step == 0 ? "prefill" : $"decoding step {step}", _position, Diagnostics.TensorThreadClock.Now(_thread));
    }

    public void Dispose() => _timer.Dispose();
}
