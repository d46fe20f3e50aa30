using System.Diagnostics;
using ActorInfer.Actors.Diagnostics;

namespace ActorInfer.Actors.Scheduling;

/// <summary>
/// The scheduler's record of policies not yet honoured: when each budget change happened, when its policy arrived,
/// when the application in progress began. Honouring them gives each its time from the budget change to the
/// block within it, split into the way to the scheduler, the wait for a boundary and the applying. A budget that
/// did not fall below what the tiers held when it changed was honoured then: its time to honour is zero, and the
/// time until the scheduler applied it is its take-up.
/// </summary>
internal sealed class WaitingChanges
{
    private readonly List<(long Changed, long? Planned, long? Sent, long Arrived, bool WithinAtChange, string ArrivedIn)> _waiting = [];
    private long _applyStarted;
    // The tensor thread's compiling (just in time) when the application in progress began.
    private Compiled _compiledAtStart;
    // What the application in progress did so far: each part's name, when it ended and the compiling by then.
    private readonly List<(string Part, long Ended, Compiled Compiled)> _laps = [];

    /// <summary>The methods the current thread compiled so far, and the time it took.</summary>
    private readonly record struct Compiled(long Methods, TimeSpan Time)
    {
        public static Compiled Now() =>
            new(System.Runtime.JitInfo.GetCompiledMethodCount(currentThread: true), System.Runtime.JitInfo.GetCompilationTime(currentThread: true));

        /// <summary>" (compiling N methods took T ms of it)", or nothing when none was compiled since <paramref name="before"/>.</summary>
        public string Since(Compiled before) =>
            Methods > before.Methods ? $" (compiling {Methods - before.Methods} methods took {Ms((Time - before.Time).TotalMilliseconds)} ms of it)" : "";
    }

    /// <summary>Whether a policy is waiting to be honoured.</summary>
    public bool AnyWaiting => _waiting.Count > 0;

    /// <summary>A policy arrived now, for a budget change at <paramref name="changedAt"/> (now where the sender did not say).</summary>
    /// <param name="plannedAt">When the policy had been chosen for the change (null: not told).</param>
    /// <param name="withinAtChange">The tiers held no more than the new budgets when they changed (a budget that rose).</param>
    /// <param name="arrivedIn">Where the running block was: "prefill", "decoding" or "between blocks".</param>
    /// <param name="sentAt">When the sender handed it to the mailbox (null: not told).</param>
    public void Arrived(long? changedAt, long? plannedAt = null, long? sentAt = null, bool withinAtChange = false, string arrivedIn = "")
    {
        var arrived = Stopwatch.GetTimestamp();
        _waiting.Add((changedAt ?? arrived, changedAt is null ? null : plannedAt, changedAt is null ? null : sentAt, arrived, withinAtChange, arrivedIn));
    }

    /// <summary>The application (at a boundary, between blocks, or on arrival) begins now.</summary>
    public void StartApplying()
    {
        _compiledAtStart = Compiled.Now();
        _applyStarted = Stopwatch.GetTimestamp();
        _laps.Clear();
    }

    /// <summary>A part of the application in progress (dropping, requeueing, re-placing) ended now.</summary>
    public void Lap(string part) => _laps.Add((part, Stopwatch.GetTimestamp(), Compiled.Now()));

    /// <summary>Stopwatch ticks as milliseconds with two decimals.</summary>
    public static string Ms(long ticks) => Ms(ticks * 1000.0 / Stopwatch.Frequency);

    private static string Ms(double milliseconds) => milliseconds.ToString("0.00", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// The application's parts so far and the time each took, e.g. "fit and drop 1 0.41 ms, the rest 0.05 ms", each with
    /// what the thread compiled in it (up to <paramref name="now"/>: the records' own formatting after it is not counted).
    /// </summary>
    private string Parts(long now, Compiled compiledNow)
    {
        if (_laps.Count == 0) return "";
        var parts = new List<string>(_laps.Count + 1);
        var from = _applyStarted;
        var compiledFrom = _compiledAtStart;
        foreach (var (part, ended, compiled) in _laps)
        {
            parts.Add($"{part} {Ms(Stopwatch.GetElapsedTime(from, ended).TotalMilliseconds)} ms{compiled.Since(compiledFrom)}");
            from = ended;
            compiledFrom = compiled;
        }
        var rest = Stopwatch.GetElapsedTime(from, now).TotalMilliseconds;
        var restCompiled = compiledNow.Since(compiledFrom);
        if (rest >= 0.005 || restCompiled.Length > 0) parts.Add($"the rest {Ms(rest)} ms{restCompiled}");
        return string.Join(", ", parts);
    }

    /// <summary>Every waiting policy is honoured now; each one's record, and none left waiting.</summary>
    public IReadOnlyList<SchedulerProtocol.PolicyHonoured> Honour(bool dropped)
    {
        var now = Stopwatch.GetTimestamp();
        var compiledNow = Compiled.Now();
        var honoured = _waiting.Select(w =>
        {
            var applied = Math.Max(w.Arrived, _applyStarted);
            var taken = Stopwatch.GetElapsedTime(w.Changed, now);
            return new SchedulerProtocol.PolicyHonoured(w.WithinAtChange ? TimeSpan.Zero : taken, dropped)
            {
                WithinAtChange = w.WithinAtChange,
                TakeUp = taken,
                Arrival = Stopwatch.GetElapsedTime(w.Changed, w.Arrived),
                Planning = w.Planned is { } planned ? Stopwatch.GetElapsedTime(w.Changed, planned) : null,
                Sending = w.Sent is { } sent ? Stopwatch.GetElapsedTime(w.Changed, sent) : null,
                ArrivedIn = w.ArrivedIn,
                ToBoundary = Stopwatch.GetElapsedTime(w.Arrived, applied),
                Applying = Stopwatch.GetElapsedTime(applied, now),
                BehindOnArrival = TensorThreadClock.Describe(w.Changed, w.Arrived),
                BehindToBoundary = applied > w.Arrived ? TensorThreadClock.Describe(w.Arrived, applied) : "nothing",
                ApplyingParts = Parts(now, compiledNow),
            };
        }).ToList();
        _waiting.Clear();
        return honoured;
    }
}
