using ActorInfer.Actors.Memory;

namespace ActorInfer.Actors.Planner;

/// <summary>
/// A policy the user gave: planned as it is while every budget is at least the one it was placed for; below them, the
/// answer of the planner that adapts it (none: the given policy still, and the tiers refuse what does not fit).
/// </summary>
public sealed class FixedPolicyPlanner(BlockPolicy policy, TierBudgets placedFor, IPolicyPlanner? adapting) : IPolicyPlanner
{
    public BlockPolicy Policy => policy;

    /// <summary>The planner that adapts the policy to lower budgets, if any.</summary>
    public IPolicyPlanner? Adapting => adapting;

    public BlockPolicy? Plan(TierBudgets budgets) => adapting is null || budgets.NotBelow(placedFor) ? policy : adapting.Plan(budgets);
}
