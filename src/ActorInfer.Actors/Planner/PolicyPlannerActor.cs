using ActorInfer.Actors.Memory;
using Akka.Actor;
using Akka.Event;
using static ActorInfer.Actors.Planner.PlannerProtocol;

namespace ActorInfer.Actors.Planner;

/// <summary>Waits for the first budgets from the memory actor, then plans on every change.</summary>
internal sealed class PolicyPlannerActor : ReceiveActor
{
    private readonly IPolicyPlanner _planner;
    private readonly IActorRef _memory;
    // Each subscriber, with the signal raised after a run-time change is sent to it (if it gave one).
    private readonly Dictionary<IActorRef, Runtime.Schedule.ChangeSignal?> _subscribers = [];
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private TierBudgets _budgets = TierBudgets.None;
    private BlockPolicy? _policy;
    // The workload the scheduler's next or running block holds (null until it says).
    private WorkloadBucket? _bucket;

    private readonly PlannerProtocol.Headroom _headroom;
    private readonly PressureHistory _history;
    // The compute tier's firm budget of the running block under conservative sizing (null: none runs, or no headroom).
    private long? _firm;
    // The running block's sequences and workload (null: none runs).
    private (int Sequences, WorkloadBucket? Bucket)? _running;

    public PolicyPlannerActor(IPolicyPlanner planner, IActorRef memory, PlannerProtocol.Headroom headroom)
    {
        _planner = planner;
        _memory = memory;
        _headroom = headroom;
        _history = new PressureHistory(headroom.History, headroom.Floor);
        ObserveBlocks();
        Receive<PlanFor>(m => Sender.Tell(new PolicyAnswer(Plan(m.Budgets), m.Budgets)));
        Receive<PlanWorkload>(m => _bucket = m.Bucket);
        Receive<Subscribe>(m =>
        {
            if (_subscribers.TryAdd(m.Subscriber, m.Changes)) Context.Watch(m.Subscriber);
        });
        Receive<Unsubscribe>(m =>
        {
            if (_subscribers.Remove(m.Subscriber)) Context.Unwatch(m.Subscriber);
        });
        Receive<Terminated>(m => _subscribers.Remove(m.ActorRef));
        Receive<MemoryProtocol.Subscribed>(m =>
        {
            Replan(m.Budgets, force: true);
            Become(Following);
        });
        // Before the memory actor answers there is no budget, so no policy yet: stash nothing, answer null.
        Receive<GetPolicy>(_ => Sender.Tell(new PolicyAnswer(null, _budgets)));
    }

    protected override void PreStart() => _memory.Tell(new MemoryProtocol.Subscribe(Self));

    private void Following()
    {
        ObserveBlocks();
        Receive<PlanFor>(m => Sender.Tell(new PolicyAnswer(Plan(m.Budgets), m.Budgets)));
        Receive<PlanWorkload>(m =>
        {
            _bucket = m.Bucket;
            Replan(_budgets, force: true, reason: $"workload {m.Bucket}");
        });
        Receive<GetPolicy>(_ => Sender.Tell(new PolicyAnswer(_policy, _budgets)));
        Receive<Subscribe>(m =>
        {
            if (_subscribers.TryAdd(m.Subscriber, m.Changes)) Context.Watch(m.Subscriber);
            m.Subscriber.Tell(new PolicyChanged(_policy, _budgets));
        });
        Receive<Unsubscribe>(m =>
        {
            if (_subscribers.Remove(m.Subscriber)) Context.Unwatch(m.Subscriber);
        });
        Receive<Terminated>(m => _subscribers.Remove(m.ActorRef));
        Receive<MemoryProtocol.BudgetChanged>(m =>
        {
            if (!_headroom.SoleTopPriority || !HoldsTheRunningBlock(m.Budgets)) _history.Budget(m.Budgets[_headroom.ComputeTier]);
            Replan(m.Budgets, force: false, m.At == 0 ? null : m.At);
        });
        Receive<MemoryProtocol.Subscribed>(m => Replan(m.Budgets, force: false));
    }

    /// <summary>Whether the budgets' own answer still holds the running block's sequences (true: none runs).</summary>
    private bool HoldsTheRunningBlock(TierBudgets budgets)
    {
        if (_running is not { } running) return true;
        var answer = running.Bucket is { } bucket ? _planner.Plan(budgets, bucket) : _planner.Plan(budgets);
        return answer is not null && (long)answer.GpuBatchSize * answer.NumGpuBatches >= running.Sequences;
    }

    private BlockPolicy? PlanExactly(TierBudgets budgets) => _bucket is { } bucket ? _planner.Plan(budgets, bucket) : _planner.Plan(budgets);

    /// <summary>
    /// The policy for the budgets as they are. Under conservative sizing, with falls in the history, a block's firm parts
    /// (its geometry, cache, activations and attention) are planned for the firm budget (<see cref="PressureHistory.FirmFor"/>),
    /// and its weights fill the rest (<see cref="IPolicyPlanner.Raise"/>): a fall down to the firm budget moves weights off
    /// the device and drops nothing. Where the engine grows the raised weights in from the firm placement
    /// (<see cref="BlockPolicy.GrowsFrom"/>), their CPU homes stay, and that move is at once, with nothing copied. A running
    /// block keeps the firm budget it started with; below it the exact policy for the budgets answers. No policy planned
    /// this way restarts a running block.
    /// </summary>
    private BlockPolicy? Plan(TierBudgets budgets)
    {
        var exact = PlanExactly(budgets);
        if (exact is null || _headroom.History <= 0) return exact;
        // Under conservative sizing no policy drops a running block whole to start it again: that is a drop of every batch.
        exact = exact with { KeepsRunningBlocks = true };
        var tier = _headroom.ComputeTier;
        var firmBytes = _firm ?? _history.FirmFor(budgets[tier]);
        if (firmBytes >= budgets[tier]) return exact;
        if (PlanExactly(budgets.With(tier, firmBytes)) is not { } firm) return exact;
        var raised = _planner.Raise(firm, budgets);
        // The weights raised beyond the firm placement are the ones a fall takes back: an engine that can grow them in keeps
        // their CPU homes, so that they leave the device at once.
        var growsFrom = raised.Runtime is { } r && firm.Runtime is { } f && r != f ? f : null;
        return raised with { KeepsRunningBlocks = true, GrowsFrom = growsFrom };
    }

    /// <summary>Under conservative sizing the scheduler's blocks make the pressure history; its other news is not the planner's.</summary>
    private void ObserveBlocks()
    {
        Receive<Scheduling.SchedulerProtocol.BlockStarted>(m =>
        {
            _running = (m.Sequences, m.Policy.Bucket);
            var budget = _budgets[_headroom.ComputeTier];
            _history.BlockStarted(budget);
            var firm = _history.FirmFor(budget);
            _firm = firm < budget ? firm : null;
        });
        Receive<Scheduling.SchedulerProtocol.BlockFinished>(_ =>
        {
            var budget = _budgets[_headroom.ComputeTier];
            var before = _history.FirmFor(budget);
            _history.BlockEnded();
            _firm = null;
            _running = null;
            // A new firm budget shapes the next block: published now, not at the next budget change.
            var after = _history.FirmFor(budget);
            if (after != before && _policy is not null)
                Replan(_budgets, force: false, reason: $"firm parts for {Planning.ByteSize.FormatBinary(after)} of {Planning.ByteSize.FormatBinary(budget)}");
        });
        Receive<Scheduling.SchedulerProtocol.PolicyHonoured>(_ => { });
        Receive<Scheduling.SchedulerProtocol.BatchesDropped>(_ => { });
        Receive<Scheduling.SchedulerProtocol.DeviceOutOfMemory>(_ => { });
    }

    private void Replan(TierBudgets budgets, bool force, long? changedAt = null, string? reason = null)
    {
        var sameBudgets = budgets == _budgets;
        _budgets = budgets;
        var policy = Plan(budgets);
        var plannedAt = System.Diagnostics.Stopwatch.GetTimestamp();
        // New budgets are published even under the same policy: the engine applies them to its tiers once honoured.
        if (!force && policy == _policy && sameBudgets) return;
        var samePolicy = policy == _policy;
        _policy = policy;
        reason ??= changedAt is null ? "budgets" : "budget change";
        if (policy is null) _log.Warning("no policy fits the budgets ({0}) ({1})", budgets, reason);
        else if (samePolicy && !force) _log.Debug("policy {0} kept for budgets ({1}) ({2})", policy, budgets, reason);
        else _log.Info("policy {0} for budgets ({1}) ({2}){3}", policy, budgets, reason,
            policy.PredictedTokensPerSecond is { } predicted ? $", predicted {predicted:F1} token/s" : "");
        var changed = new PolicyChanged(policy, budgets) { ChangedAt = changedAt, PlannedAt = changedAt is null ? null : plannedAt };
        foreach (var (s, changes) in _subscribers)
        {
            if (changedAt is null)
            {
                s.Tell(changed);
                continue;
            }
            // A run-time change: the subscriber's signal is raised once the change is in its mailbox (a layer in progress
            // stops for it only then, so the change is ahead of the layer's answer).
            s.Tell(changed with { SentAt = System.Diagnostics.Stopwatch.GetTimestamp(), Signalled = changes is not null });
            changes?.Sent();
        }
    }
}
