using System.Diagnostics;

namespace ActorInfer.Actors.Diagnostics;

/// <summary>
/// The most recent messages the tensor-issuing actors handled (what, from when to when), process-wide. A budget
/// change waits in the scheduler's mailbox while the one tensor thread runs another message, and then for a layer
/// boundary: this tells which message held it, so that the time to honour a change can be explained.
/// </summary>
public static class TensorThreadClock
{
    private const int Capacity = 1024;
    private static readonly (string What, long Start, long End)[] Recent = new (string, long, long)[Capacity];
    private static readonly Lock Gate = new();
    private static long _count;

    /// <summary>
    /// Told (on the tensor thread) of every message that ran at least <see cref="SlowThreshold"/>, with its milliseconds:
    /// a run's timeline records them, so that a stall can be placed.
    /// </summary>
    public static Action<string, double>? Slow { get; set; }

    public static TimeSpan SlowThreshold { get; set; } = TimeSpan.FromMilliseconds(200);

    // The message the tensor thread runs now (null between messages), and since when: for a stall's report.
    private static string? _runningWhat;
    private static long _runningSince;

    /// <summary>A tensor-issuing actor begins a message now.</summary>
    public static void Begin(string what, long start)
    {
        Volatile.Write(ref _runningSince, start);
        Volatile.Write(ref _runningWhat, what);
    }

    /// <summary>What the tensor thread runs now, in a few words ("scheduler PollTokens for 31.2 s"), or what it ran last and how long ago.</summary>
    public static string Now()
    {
        var now = Stopwatch.GetTimestamp();
        if (Volatile.Read(ref _runningWhat) is { } what)
            return string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"runs {what} for {Stopwatch.GetElapsedTime(Volatile.Read(ref _runningSince), now).TotalSeconds:F1} s");
        (string What, long End)? last = null;
        lock (Gate)
            if (_count > 0)
            {
                var (w, _, end) = Recent[(_count - 1) % Capacity];
                last = (w, end);
            }
        return last is { } l
            ? string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"is idle; it last ran {l.What}, {Stopwatch.GetElapsedTime(l.End, now).TotalSeconds:F1} s ago")
            : "has run nothing";
    }

    public static void Record(string what, long start)
    {
        Volatile.Write(ref _runningWhat, null);
        var end = Stopwatch.GetTimestamp();
        lock (Gate) Recent[_count++ % Capacity] = (what, start, end);
        if (Slow is { } slow && Stopwatch.GetElapsedTime(start, end) is var took && took >= SlowThreshold) slow(what, took.TotalMilliseconds);
    }

    /// <summary>
    /// The longest message that ran (at least partly) between the two timestamps, with the milliseconds it ran in all,
    /// and how many ran there; null when none is recorded there.
    /// </summary>
    // Fully optimized from its first call: its scan of the record is long enough that a first tier's code would be
    // replaced on the stack mid-scan (about a millisecond of compiling on the tensor thread, right after an honour).
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static (string What, double Milliseconds, int Count)? Longest(long from, long to)
    {
        lock (Gate)
        {
            (string What, double Milliseconds, int Count)? best = null;
            var count = 0;
            var n = (int)Math.Min(_count, Capacity);
            for (var i = 0; i < n; i++)
            {
                var (what, start, end) = Recent[i];
                if (what is null || end <= from || start >= to) continue;
                count++;
                var ms = Stopwatch.GetElapsedTime(start, end).TotalMilliseconds;
                if (best is null || ms > best.Value.Milliseconds) best = (what, ms, 0);
            }
            return best is { } b ? (b.What, b.Milliseconds, count) : null;
        }
    }

    /// <summary>Says it in a few words: "Compute decode 2.1 ms (longest of 3)".</summary>
    public static string Describe(long from, long to) =>
        Longest(from, to) is { } l
            ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{l.What} {l.Milliseconds:F1} ms (longest of {l.Count})")
            : "nothing";
}
