using Akka.Actor;
using Akka.Event;
using static ActorInfer.Actors.Memory.MemoryProtocol;

namespace ActorInfer.Actors.Memory;

internal sealed class MemoryPressureActor : ReceiveActor, IWithTimers
{
    private const string ProbeTimer = "probe";
    private sealed record ProbeTick
    {
        public static readonly ProbeTick Instance = new();
    }

    private readonly MemoryProtocol.Settings _settings;
    private readonly IMemoryProbe? _probe;
    private readonly Dictionary<Tier, long> _operator = [];
    private readonly Dictionary<Tier, long> _telemetry = [];
    private readonly Dictionary<Tier, long> _shares = [];
    private readonly HashSet<IActorRef> _subscribers = [];
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private TierBudgets _budgets;

    public MemoryPressureActor(MemoryProtocol.Settings settings, IMemoryProbe? probe)
    {
        _settings = settings;
        _probe = probe;
        // No operator, share or telemetry yet: the configured budgets, the GPU's within its ceiling.
        _budgets = new TierBudgets(Effective(Tier.Gpu), Effective(Tier.Cpu), Effective(Tier.Disk));

        Receive<SetBudget>(m =>
        {
            if (m.Bytes < 0)
            {
                _log.Warning("ignored a negative {0} budget", m.Tier);
                return;
            }
            if (m.Tier == Tier.Gpu && _settings.GpuCeiling is { } ceiling && m.Bytes > ceiling)
                _log.Warning("a GPU budget of {0} was asked; the device's allocator is capped at the node's budget of {1}, which stands",
                    Planning.ByteSize.FormatBinary(m.Bytes), Planning.ByteSize.FormatBinary(ceiling));
            _operator[m.Tier] = m.Bytes;
            Update(m.Tier, "operator");
        });
        Receive<ClearBudget>(m =>
        {
            _operator.Remove(m.Tier);
            Update(m.Tier, _settings.Configured(m.Tier) is null ? "telemetry" : "config");
        });
        Receive<Share>(m =>
        {
            _shares[m.Tier] = Math.Max(0, m.Bytes);
            Update(m.Tier, "arbiter");
        });
        Receive<TelemetryReading>(m => Reading(m.Tier, m.AvailableBytes));
        Receive<ProbeTick>(_ => ProbeAll());
        Receive<Subscribe>(m =>
        {
            if (_subscribers.Add(m.Subscriber)) Context.Watch(m.Subscriber);
            m.Subscriber.Tell(new Subscribed(_budgets));
        });
        Receive<Unsubscribe>(m =>
        {
            if (_subscribers.Remove(m.Subscriber)) Context.Unwatch(m.Subscriber);
        });
        Receive<Terminated>(m => _subscribers.Remove(m.ActorRef));
        Receive<GetBudgets>(_ => Sender.Tell(new CurrentBudgets(_budgets)));
    }

    public ITimerScheduler Timers { get; set; } = null!;

    protected override void PreStart()
    {
        if (_probe is null) return;
        ProbeAll();
        Timers.StartPeriodicTimer(ProbeTimer, ProbeTick.Instance, _settings.TelemetryInterval);
    }

    private void ProbeAll()
    {
        foreach (var tier in Enum.GetValues<Tier>())
            if (_probe!.Available(tier) is { } available)
                Reading(tier, available);
    }

    private void Reading(Tier tier, long available)
    {
        var previous = _telemetry.GetValueOrDefault(tier, -1);
        _telemetry[tier] = available;
        // Small moves are noise unless the tier had no reading at all; they still count once large enough.
        if (previous >= 0 && Math.Abs(available - _budgets[tier]) < _settings.TelemetryChangeThreshold) return;
        Update(tier, "telemetry");
    }

    private long Effective(Tier tier)
    {
        var bytes = _operator.TryGetValue(tier, out var op) ? op
            : _settings.Configured(tier) is { } configured ? configured
            : _shares.TryGetValue(tier, out var share) ? share
            : _telemetry.GetValueOrDefault(tier, 0);
        return tier == Tier.Gpu && _settings.GpuCeiling is { } ceiling ? Math.Min(bytes, ceiling) : bytes;
    }

    private void Update(Tier tier, string cause)
    {
        var bytes = Effective(tier);
        if (bytes == _budgets[tier]) return;
        _budgets = _budgets.With(tier, bytes);
        // Telemetry moves with every other process on the machine: news only once a planner acts on it (it logs its policy).
        var line = $"{tier} budget is now {Planning.ByteSize.FormatBinary(bytes)} ({cause})";
        if (cause == "telemetry") _log.Debug(line);
        else _log.Info(line);
        var changed = new BudgetChanged(tier, bytes, _budgets, cause) { At = System.Diagnostics.Stopwatch.GetTimestamp() };
        foreach (var s in _subscribers) s.Tell(changed);
    }
}
