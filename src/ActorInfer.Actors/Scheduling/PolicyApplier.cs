using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using Akka.Event;

namespace ActorInfer.Actors.Scheduling;

/// <summary>
/// Applies a policy's placement and budgets to the engine and honours the policies waiting on the honour clock: at once
/// when what the engine holds is already within the budgets (a larger budget, or drops that were enough; weights then
/// move after), else as soon as enough weights have left the device, and at the end in any case.
/// </summary>
internal sealed class PolicyApplier(IInferenceEngine engine, WaitingChanges honours, Action<object> publish, ILoggingAdapter log)
{
    /// <summary>Every waiting policy is honoured now; each one's record is published.</summary>
    public void HonourWaiting(bool dropped)
    {
        foreach (var honoured in honours.Honour(dropped)) publish(honoured);
    }

    /// <summary>
    /// Applies <paramref name="policy"/> (none: only honours) and honours the waiting policies. False when its placement
    /// could not be applied (no room on a tier): the engine is left as it was, and nothing runs until a policy that can
    /// be applied arrives.
    /// </summary>
    /// <param name="block">The running block, if any (for the log).</param>
    /// <param name="dropped">Whether batches were dropped for it (told in the honour records).</param>
    public bool ApplyAndHonour(BlockPolicy? policy, TierBudgets budgets, RunningBlock? block, bool dropped)
    {
        if (policy is null)
        {
            HonourWaiting(dropped);
            return true;
        }
        if (engine.Within(budgets)) HonourWaiting(dropped);
        var applied = true;
        try
        {
            // Weights leaving the device one by one: honoured as soon as the tiers hold no more than the budgets, not
            // after the last one (and at the end in any case: budgets applied while the device held more are counted).
            engine.Apply(policy, budgets, () =>
            {
                if (!honours.AnyWaiting || !engine.Within(budgets)) return;
                honours.Lap("re-place until within");
                HonourWaiting(dropped);
            });
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            log.Error(ex, "policy {0} could not be applied{1}", policy, block is null ? "" : $" in block {block.Id}");
            applied = false;
        }
        if (honours.AnyWaiting)
        {
            honours.Lap("re-place");
            HonourWaiting(dropped);
        }
        return applied;
    }
}
