using System.Diagnostics;

namespace ActorInfer.Actors.Diagnostics;

/// <summary>
/// The most recent messages the tensor-issuing actors handled (what, from when to when, on which tensor thread), process-
/// wide. A budget change waits in the scheduler's mailbox while its tensor thread runs another message, and then for a
/// layer boundary: this tells which message held it, so that the time to honour a change can be explained. On a node of
/// several models each model has a tensor thread of its own, and a question names the thread it is about (by default the
/// calling one).
/// </summary>
public static class TensorThreadClock
{
    private const int Capacity = 1024;
    private static readonly (string What, long Start, long End, int Thread)[] Recent = new (string, long, long, int)[Capacity];
    private static readonly Lock Gate = new();
    private static long _count;

    /// <summary>
    /// Told (on the tensor thread) of every message that ran at least <see cref="SlowThreshold"/>, with its milliseconds:
    /// a run's timeline records them, so that a stall can be placed.
    /// </summary>
    public static Action<string, double>? Slow { get; set; }

    public static TimeSpan SlowThreshold { get; set; } = TimeSpan.FromMilliseconds(200);

    // The message each tensor thread runs now (none between messages), and since when: for a stall's report.
    private static readonly Dictionary<int, (string What, long Since)> Running = [];

    /// <summary>A tensor-issuing actor begins a message now, on the calling thread.</summary>
    public static void Begin(string what, long start)
    {
        lock (Gate) Running[Environment.CurrentManagedThreadId] = (what, start);
    }

    /// <summary>
    /// What the tensor thread <paramref name="thread"/> runs now, in a few words ("scheduler PollTokens for 31.2 s"), or
    /// what it ran last and how long ago.
    /// </summary>
    public static string Now(int thread)
    {
        var now = Stopwatch.GetTimestamp();
        (string What, long End)? last = null;
        lock (Gate)
        {
            if (Running.TryGetValue(thread, out var running))
                return string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"runs {running.What} for {Stopwatch.GetElapsedTime(running.Since, now).TotalSeconds:F1} s");
            for (var i = _count - 1; i >= Math.Max(0, _count - Capacity); i--)
            {
                var (w, _, end, t) = Recent[i % Capacity];
                if (t != thread) continue;
                last = (w, end);
                break;
            }
        }
        return last is { } l
            ? string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"is idle; it last ran {l.What}, {Stopwatch.GetElapsedTime(l.End, now).TotalSeconds:F1} s ago")
            : "has run nothing";
    }

    public static void Record(string what, long start)
    {
        var thread = Environment.CurrentManagedThreadId;
        var end = Stopwatch.GetTimestamp();
        lock (Gate)
        {
            Running.Remove(thread);
            Recent[_count++ % Capacity] = (what, start, end, thread);
        }
        if (Slow is { } slow && Stopwatch.GetElapsedTime(start, end) is var took && took >= SlowThreshold) slow(what, took.TotalMilliseconds);
    }

    /// <summary>
    /// The longest message that ran (at least partly) between the two timestamps on the calling thread (or on
    /// <paramref name="thread"/>), with the milliseconds it ran in all, and how many ran there; null when none is recorded there.
    /// </summary>
    // Fully optimized from its first call: its scan of the record is long enough that a first tier's code would be
    // replaced on the stack mid-scan (about a millisecond of compiling on the tensor thread, right after an honour).
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static (string What, double Milliseconds, int Count)? Longest(long from, long to, int? thread = null)
    {
        var on = thread ?? Environment.CurrentManagedThreadId;
        lock (Gate)
        {
            (string What, double Milliseconds, int Count)? best = null;
            var count = 0;
            var n = (int)Math.Min(_count, Capacity);
            for (var i = 0; i < n; i++)
            {
                var (what, start, end, t) = Recent[i];
                if (what is null || t != on || end <= from || start >= to) continue;
                count++;
                var ms = Stopwatch.GetElapsedTime(start, end).TotalMilliseconds;
                if (best is null || ms > best.Value.Milliseconds) best = (what, ms, 0);
            }
            return best is { } b ? (b.What, b.Milliseconds, count) : null;
        }
    }

    /// <summary>Says it in a few words, for the calling thread: "Compute decode 2.1 ms (longest of 3)".</summary>
    public static string Describe(long from, long to) =>
        Longest(from, to) is { } l
            ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{l.What} {l.Milliseconds:F1} ms (longest of {l.Count})")
            : "nothing";
}
