namespace ActorInfer.Actors.Memory;

/// <summary>One budget change of a pressure schedule: when (milliseconds from the start, or a decoding step), which tier, how much.</summary>
/// <param name="Line">The schedule's line it came from (for errors).</param>
public sealed record PressureEvent(int Line, long? AtMs, int? AtStep, Tier Tier, long Budget);

/// <summary>
/// Replays a pressure schedule into the memory-pressure actor, exactly as `/admin/pressure` commands arrive: each
/// event is an operator budget for its tier at its time (<c>at_ms</c> from <see cref="Start"/>) or after its decoding
/// step (<c>at_step</c>, counted over the whole run by <see cref="OnStep"/>). While the budgets leave nothing able to
/// run no step passes, so when the planner says so (<see cref="OnPolicy"/>) the next step-timed event follows at once.
/// A step-timed event is delivered before the step that counted it returns (<c>deliver</c>): its change is on its way to
/// the running block before the next step begins, however far the actors' dispatcher lags the tensor thread.
/// </summary>
public sealed class PressurePlayer : IDisposable
{
    private readonly IReadOnlyList<PressureEvent> _events;
    private readonly PressureEvent[] _stepEvents;
    private readonly Action<PressureEvent> _send;
    private readonly Action? _deliver;
    private readonly Lock _gate = new();
    private readonly List<Timer> _timers = [];
    private readonly Dictionary<Tier, long> _budgets = [];
    private int _steps;
    private int _next;

    /// <param name="send">Hands one event to the memory-pressure actor (as an operator's budget).</param>
    /// <param name="deliver">
    /// Called on the step's thread after step-timed events were sent from <see cref="OnStep"/>: returns once what was sent
    /// has passed the actors between the memory-pressure actor and the running block (null: the events go as sent).
    /// </param>
    public PressurePlayer(IReadOnlyList<PressureEvent> events, Action<PressureEvent> send, Action? deliver = null)
    {
        _events = events;
        _stepEvents = events.Where(e => e.AtStep is not null).ToArray();
        _send = send;
        _deliver = deliver;
    }

    /// <summary>Events sent so far (each one counted once it is in the memory-pressure actor's mailbox).</summary>
    public int Sent
    {
        get
        {
            lock (_gate) return _sent;
        }
    }

    private int _sent;

    /// <summary>The budget the schedule last set for a tier, if it set one.</summary>
    public long? Budget(Tier tier)
    {
        lock (_gate) return _budgets.TryGetValue(tier, out var b) ? b : null;
    }

    /// <summary>Told of every event sent (for the run's timeline).</summary>
    public Action<PressureEvent>? Applied { get; set; }

    /// <summary>The budgets every tier has once the whole schedule has played over <paramref name="start"/>.</summary>
    public static TierBudgets Final(IReadOnlyList<PressureEvent> events, TierBudgets start) =>
        events.Aggregate(start, (b, e) => b.With(e.Tier, e.Budget));

    /// <summary>Starts the clock of the <c>at_ms</c> events and sends the step events due before any step.</summary>
    public void Start()
    {
        foreach (var e in _events.Where(e => e.AtMs is not null))
            _timers.Add(new Timer(_ => Send(e), null, TimeSpan.FromMilliseconds(e.AtMs!.Value), Timeout.InfiniteTimeSpan));
        SendDueSteps();
    }

    /// <summary>Counts decoding steps over the whole run (0 is a block's prefill and does not count).</summary>
    public void OnStep(int step)
    {
        if (step == 0) return;
        Interlocked.Increment(ref _steps);
        if (SendDueSteps() > 0) _deliver?.Invoke();
    }

    /// <summary>
    /// The planner's policy for <paramref name="budgets"/>: when none fits the budgets the schedule has set last, no step
    /// will pass, so the next step-timed event is sent now.
    /// </summary>
    public void OnPolicy(Planner.BlockPolicy? policy, TierBudgets budgets)
    {
        if (policy is not null) return;
        lock (_gate)
        {
            if (_budgets.Any(b => budgets[b.Key] != b.Value)) return;
            if (_next < _stepEvents.Length) Send(_stepEvents[_next++]);
        }
    }

    /// <summary>Sends the step-timed events now due; returns how many.</summary>
    private int SendDueSteps()
    {
        var sent = 0;
        lock (_gate)
            for (; _next < _stepEvents.Length && _stepEvents[_next].AtStep <= Volatile.Read(ref _steps); sent++)
                Send(_stepEvents[_next++]);
        return sent;
    }

    private void Send(PressureEvent e)
    {
        lock (_gate)
        {
            _budgets[e.Tier] = e.Budget;
            _sent++;
            _send(e);
            Applied?.Invoke(e);
        }
    }

    public void Dispose()
    {
        // An event in flight finishes before whatever it changes is disposed.
        foreach (var t in _timers)
        {
            using var stopped = new ManualResetEvent(false);
            if (t.Dispose(stopped)) stopped.WaitOne();
        }
    }
}
