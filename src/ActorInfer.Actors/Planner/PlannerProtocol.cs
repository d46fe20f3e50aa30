using ActorInfer.Actors.Memory;
using Akka.Actor;

namespace ActorInfer.Actors.Planner;

/// <summary>
/// The policy-planner actor: holds the planner (hardware profile and model shape inside it), follows the
/// memory-pressure actor's budgets, and publishes <see cref="PolicyChanged"/> whenever a new budget changes the
/// best policy.
/// </summary>
public static class PlannerProtocol
{
    public interface ICommand;

    /// <summary>"Best policy for this budget": answered with <see cref="PolicyAnswer"/>; changes nothing.</summary>
    public sealed record PlanFor(TierBudgets Budgets) : ICommand;

    /// <summary>
    /// The workload of the next block: the planner plans for it from now on (until the next one) and publishes
    /// <see cref="PolicyChanged"/> for it, even when the policy is the same.
    /// </summary>
    public sealed record PlanWorkload(WorkloadBucket Bucket) : ICommand;

    /// <summary>The current policy under the current budgets, answered with <see cref="PolicyAnswer"/>.</summary>
    public sealed record GetPolicy : ICommand
    {
        public static readonly GetPolicy Instance = new();
    }

    /// <summary>Subscribes to <see cref="PolicyChanged"/>; the current one is sent at once when there is one.</summary>
    /// <param name="Changes">
    /// A local subscriber's signal, raised after each run-time change is sent to it (<see cref="PolicyChanged.Signalled"/>);
    /// null for none.
    /// </param>
    public sealed record Subscribe(IActorRef Subscriber, Runtime.Schedule.ChangeSignal? Changes = null) : ICommand;

    public sealed record Unsubscribe(IActorRef Subscriber) : ICommand;

    /// <param name="Policy">Null: the model cannot run within <paramref name="Budgets"/>.</param>
    public sealed record PolicyAnswer(BlockPolicy? Policy, TierBudgets Budgets);

    /// <param name="Policy">Null: nothing fits any more; schedulers start no new block until a policy returns.</param>
    public sealed record PolicyChanged(BlockPolicy? Policy, TierBudgets Budgets)
    {
        /// <summary>
        /// When the budget change behind this policy happened (a <see cref="System.Diagnostics.Stopwatch"/> timestamp):
        /// the time to honour the policy counts from there. Null: from the policy's arrival.
        /// </summary>
        public long? ChangedAt { get; init; }

        /// <summary>When the planner had chosen this policy for the change (a Stopwatch timestamp); null when not told.</summary>
        public long? PlannedAt { get; init; }

        /// <summary>When the sender handed this message to the scheduler's mailbox (a Stopwatch timestamp); null when not told.</summary>
        public long? SentAt { get; init; }

        /// <summary>Whether the sender raised the receiver's <see cref="Runtime.Schedule.ChangeSignal"/> for it (the receiver lowers it).</summary>
        public bool Signalled { get; init; }
    }

    /// <summary>
    /// Conservative block sizing: new blocks leave headroom for the budget falls of the last <paramref name="History"/>
    /// blocks of the <paramref name="ComputeTier"/> (<see cref="PressureHistory"/>); 0: none. The planner then observes the
    /// scheduler's blocks (<see cref="Scheduling.SchedulerProtocol.Observe"/>).
    /// </summary>
    public sealed record Headroom(Tier ComputeTier, int History)
    {
        /// <summary>
        /// On a node of several models, a lower-priority model's memory floor: the least its share falls to, so its firm
        /// parts are planned for no more than that from the first block on, before any fall is in the history (null:
        /// none).
        /// </summary>
        public long? Floor { get; init; }

        /// <summary>
        /// On a node of several models, the one model at the node's top priority. The arbiter lowers its share only once its
        /// own demand (its running block included) stayed lower for a while, so such a fall leaves its running block whole
        /// and is not pressure: a fall joins its history only where the budget's answer no longer holds the running block
        /// (pressure on the node's whole budget that reached it). Counted like a lower-priority model's, the falls that
        /// followed its own bursts planned its next burst's blocks smaller than its share.
        /// </summary>
        public bool SoleTopPriority { get; init; }

        public static readonly Headroom None = new(Tier.Gpu, 0);
    }

    /// <param name="memory">The memory-pressure actor to follow.</param>
    public static Props Props(IPolicyPlanner planner, IActorRef memory) =>
        Akka.Actor.Props.Create(() => new PolicyPlannerActor(planner, memory, Headroom.None));

    /// <param name="memory">The memory-pressure actor to follow.</param>
    /// <param name="headroom">Conservative block sizing (<see cref="Headroom.None"/>: every block as large as the budgets allow).</param>
    public static Props Props(IPolicyPlanner planner, IActorRef memory, Headroom headroom) =>
        Akka.Actor.Props.Create(() => new PolicyPlannerActor(planner, memory, headroom));
}
