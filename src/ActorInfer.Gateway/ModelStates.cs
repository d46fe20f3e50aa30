using ActorInfer.Actors.Arbiter;
using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using ActorInfer.Actors.Tiers;
using Akka.Actor;

namespace ActorInfer.Gateway;

/// <summary>
/// <c>/admin/state</c>'s <c>models</c>: each served model's budgets (on a node of several, the GPU arbiter's share of the
/// compute tier), what its tiers hold, its policy and queue with its progress (decoding steps, layers done), and what the
/// arbiter knows of it (demand, drops).
/// </summary>
internal static class ModelStates
{
    public static async Task<object[]> Read(GatewayContext g)
    {
        var arbiter = g.Node.Arbiter is { } a ? await a.Ask<ArbiterProtocol.State>(ArbiterProtocol.GetState.Instance, g.AskTimeout) : null;
        var states = new List<object>();
        foreach (var model in g.Node.Models.Where(m => !m.Memory.IsNobody()))
        {
            var budgets = await model.Memory.Ask<MemoryProtocol.CurrentBudgets>(MemoryProtocol.GetBudgets.Instance, g.AskTimeout);
            var policy = await model.Planner.Ask<PlannerProtocol.PolicyAnswer>(PlannerProtocol.GetPolicy.Instance, g.AskTimeout);
            var scheduler = await model.Scheduler.Ask<SchedulerProtocol.SchedulerStatus>(SchedulerProtocol.GetStatus.Instance, g.AskTimeout);
            var tiers = await Task.WhenAll(model.TierActors.Select(t => t.Ask<TierProtocol.TierState>(TierProtocol.GetState.Instance, g.AskTimeout)));
            var held = arbiter?.Tenants.FirstOrDefault(t => t.Name == model.Name);
            states.Add(new
            {
                name = model.Name,
                priority = model.Settings.Priority,
                memory_floor = model.Settings.MemoryFloor,
                memory_ceiling = model.Settings.MemoryCeiling,
                static_share = model.Settings.StaticShare,
                budgets = new { gpu = budgets.Budgets.Gpu, cpu = budgets.Budgets.Cpu, disk = budgets.Budgets.Disk },
                bytes_in_use = tiers.ToDictionary(t => GatewayMetrics.TierName(t.Tier), t => t.BytesHeld),
                largest_block_bytes = model.LargestBlockBytes,
                policy = policy.Policy?.ToString(),
                block_size = policy.Policy?.BlockSize,
                queue = new
                {
                    scheduler = scheduler.Queued, running_block = scheduler.RunningBlock, decoding_steps = scheduler.DecodingSteps,
                    layers_done = scheduler.LayersDone, tokens_generated = scheduler.TokensGenerated,
                },
                arbiter = held is null ? null : new
                {
                    share = held.Share, demand = held.Demand, queued = held.Queued, running = held.Running,
                    drops = held.Drops, requeues = held.Requeues, recomputed_tokens = held.RecomputedTokens,
                    fixed_share = held.FixedShare,
                },
            });
        }
        return states.ToArray();
    }

    /// <summary>The arbiter's own view: the tier it divides and the node's budgets it divides.</summary>
    public static async Task<object?> Arbiter(GatewayContext g)
    {
        if (g.Node.Arbiter is not { } a) return null;
        var state = await a.Ask<ArbiterProtocol.State>(ArbiterProtocol.GetState.Instance, g.AskTimeout);
        return new
        {
            tier = GatewayMetrics.TierName(state.ComputeTier),
            device = new { gpu = state.Device.Gpu, cpu = state.Device.Cpu, disk = state.Device.Disk },
        };
    }
}
