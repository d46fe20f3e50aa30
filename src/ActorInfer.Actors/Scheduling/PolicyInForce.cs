using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using Akka.Event;

namespace ActorInfer.Actors.Scheduling;

/// <summary>
/// The policy blocks run under, the budgets that came with it, and its changes not yet applied or honoured. The
/// scheduler says when a change applies (between blocks, at a boundary of the running block, or at the next one);
/// applying it fits the running block to it (<see cref="BlockFitting"/>), places and honours
/// (<see cref="PolicyApplier"/>, <see cref="WaitingChanges"/>). Owned by the scheduler on the tensor thread.
/// </summary>
internal sealed class PolicyInForce
{
    private readonly IInferenceEngine _engine;
    // The budgets that came with the policy (TierBudgets.None when the sender gave none).
    private TierBudgets _budgets = TierBudgets.None;
    // The policies waiting to be honoured, and when the application in progress began.
    private readonly WaitingChanges _honours = new();
    private readonly PolicyApplier _applier;

    /// <param name="publishHonour">Publishes each honour record (<see cref="SchedulerProtocol.PolicyHonoured"/>).</param>
    public PolicyInForce(IInferenceEngine engine, Action<object> publishHonour, ILoggingAdapter log)
    {
        _engine = engine;
        // Each record names the budgets in force: a GPU arbiter counts what the model may still hold until it honours its latest share.
        _applier = new PolicyApplier(engine, _honours,
            m => publishHonour(m is SchedulerProtocol.PolicyHonoured h && _budgets != TierBudgets.None ? h with { Budgets = _budgets } : m), log);
    }

    /// <summary>
    /// The policy in force: the latest to arrive, halved after an out-of-memory, null when there is none or its
    /// placement could not be applied (nothing runs until a policy that can be applied arrives).
    /// </summary>
    public BlockPolicy? Policy { get; set; }

    /// <summary>
    /// Set when a policy arrives while a block runs: applied on arrival where the block is at a boundary as it stands
    /// (BlockFitting.AtBoundaryNow), else at its next layer boundary (batches dropped down to what fits, weights
    /// re-placed, budgets enforced), then honoured.
    /// </summary>
    public bool Pending { get; private set; }

    /// <summary>
    /// The running block kept its placement where the policy in force only moves more weights onto the device
    /// (<see cref="BlockFitting.MovesWeightsIn"/>): the placement applies between blocks.
    /// </summary>
    public bool RaiseDeferred { get; private set; }

    /// <summary>
    /// A policy arrived (the running block is <paramref name="block"/>, if any): it is the policy in force, and waits to
    /// be honoured. Returns the level its log lines take.
    /// </summary>
    public LogLevel Arrived(PlannerProtocol.PolicyChanged m, RunningBlock? block)
    {
        // A layer in progress stops for it no longer (it may have already: its Yielded answer is behind this one).
        if (m.Signalled) _engine.Changes?.Received();
        // New budgets under the same policy are applied as any change is, and logged only in detail.
        var level = m.Policy == Policy ? LogLevel.DebugLevel : LogLevel.InfoLevel;
        Policy = m.Policy;
        // With no change waiting the tiers hold no more than the budgets in force (the tiers refuse more); budgets
        // that did not fall were therefore honoured when they changed.
        var rose = m.Budgets != TierBudgets.None && _budgets != TierBudgets.None && !_honours.AnyWaiting &&
                   m.Budgets.NotBelow(_budgets) && _engine.Within(m.Budgets);
        if (m.Budgets != TierBudgets.None) _budgets = m.Budgets;
        // From the budget change behind the policy where the sender knows it (planning and mailbox time count).
        _honours.Arrived(m.ChangedAt, m.PlannedAt, m.SentAt, withinAtChange: rose,
            arrivedIn: block is null ? "between blocks" : block.Step.IsPrefill ? "prefill" : "decoding");
        return level;
    }

    /// <summary>The policy waits for the next layer boundary of the running block (<see cref="Pending"/>).</summary>
    public void AwaitBoundary(RunningBlock block)
    {
        Pending = true;
        // Honoured on arrival when the running block already fits it, as placed now and as the policy will place
        // it: what it holds and will hold stays within the budgets; the placement still applies at the boundary.
        _honours.StartApplying();
        if (Policy is { } p && _engine.Within(_budgets) && BlockFitting.Fits(_engine, block, p, _budgets) &&
            BlockFitting.Fits(_engine, block, p with { Runtime = null }, _budgets))
            _applier.HonourWaiting(dropped: false);
    }

    /// <summary>No block runs: the policy's placement and budgets apply now.</summary>
    public void ApplyBetweenBlocks()
    {
        _honours.StartApplying();
        Pending = false;
        RaiseDeferred = false;
        if (!_applier.ApplyAndHonour(Policy, _budgets, null, dropped: false)) Policy = null;
    }

    /// <summary>
    /// At a layer boundary of the running block (or the start or end of a step): drops GPU batches from the end until
    /// the block fits the policy (its size, and its placement within the budgets), applies the policy's placement and
    /// budgets, and honours it. Returns how many batches were dropped (their sequences are the block's to requeue).
    /// </summary>
    /// <param name="atStepEnd">The step's tokens are on their way (see <see cref="BlockFitting.Shrink"/>).</param>
    public int ApplyAtBoundary(RunningBlock block, bool atStepEnd)
    {
        _honours.StartApplying();
        Pending = false;
        var policy = Policy;
        // A rise of the weights' device share waits for the block's end: the block keeps its placement, under the new budgets,
        // and meanwhile its weights move onto the device as its layers copy them in anyway (no copy of its own holds the
        // tensor thread).
        ActorInfer.Planning.Policy? grow = null;
        if (policy?.Runtime is { } next && _engine.Placement is { } now && BlockFitting.MovesWeightsIn(now, next))
        {
            policy = policy with { Runtime = now };
            RaiseDeferred = true;
            grow = next;
        }
        var batches = BlockFitting.Shrink(_engine, block, policy, _budgets, atStepEnd, _honours);
        // Honoured as soon as the tiers are within the budgets (once the batches are gone, or once enough weights have
        // left the device): the bookkeeping of the drop (which entries go, checkpoints, requeueing) comes after.
        if (!_applier.ApplyAndHonour(policy, _budgets, block, dropped: batches > 0)) Policy = null;
        else if (grow is not null) _engine.GrowWeightsTowards(grow, _budgets);
        return batches;
    }
}
