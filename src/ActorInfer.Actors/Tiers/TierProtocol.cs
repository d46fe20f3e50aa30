using ActorInfer.Actors.Memory;
using Akka.Actor;
using RuntimeTier = ActorInfer.Runtime.Tiers.Tier;

namespace ActorInfer.Actors.Tiers;

/// <summary>
/// The offload-tier actors (device, CPU, disk): each owns one of the runtime's tiers, applies the budget the
/// memory-pressure actor publishes for it, and answers what the tier holds. The bytes themselves move on the
/// tensor thread (the runtime's copy engine), never as messages.
/// </summary>
public static class TierProtocol
{
    public interface ICommand;

    /// <summary>Asks for the tier's state; answered with <see cref="TierState"/>.</summary>
    public sealed record GetState : ICommand
    {
        public static readonly GetState Instance = new();
    }

    /// <summary>A tier's budget and what it holds (accounted bytes, the peak since the last reset, live buffers).</summary>
    public sealed record TierState(Tier Tier, long BudgetBytes, long BytesHeld, long PeakBytes, int LiveBuffers)
    {
        public bool WithinBudget => BytesHeld <= BudgetBytes;
    }

    /// <param name="memory">The memory-pressure actor whose budget changes for <paramref name="tier"/> this actor follows.</param>
    /// <param name="enforce">
    /// Whether the tier refuses allocations past the budget at once. A node leaves this off: there the budget
    /// shapes the planner's blocks, and the engine applies a budget to its tiers itself once the running block has
    /// shed down to it (at its next layer boundary), so that no buffer of a step fails before then.
    /// </param>
    public static Props Props(Tier tier, RuntimeTier owned, IActorRef memory, bool enforce = true) =>
        Akka.Actor.Props.Create(() => new TierActor(tier, owned, memory, enforce));
}

internal sealed class TierActor : ReceiveActor
{
    private long _budget;

    public TierActor(Tier tier, RuntimeTier owned, IActorRef memory, bool enforce)
    {
        _budget = owned.BudgetBytes;
        void Apply(long bytes)
        {
            // Zero means "no budget known yet" in the memory actor's budgets; the tier keeps what it has then.
            if (bytes <= 0) return;
            _budget = bytes;
            if (enforce) owned.SetBudget(bytes);
        }

        Receive<MemoryProtocol.Subscribed>(m => Apply(m.Budgets[tier]));
        Receive<MemoryProtocol.BudgetChanged>(m =>
        {
            if (m.Tier == tier) Apply(m.Bytes);
        });
        Receive<TierProtocol.GetState>(_ =>
            Sender.Tell(new TierProtocol.TierState(tier, _budget, owned.BytesHeld, owned.PeakBytes, owned.LiveLeases)));
        memory.Tell(new MemoryProtocol.Subscribe(Self));
    }
}
