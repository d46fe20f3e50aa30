using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using Akka.Actor;

namespace ActorInfer.Actors.Arbiter;

/// <summary>
/// The GPU arbiter of a node that serves several models: it follows the node's memory-pressure actor (the device's
/// budget from configuration, telemetry and operators), reads each model's queue and running block, and divides the
/// compute tier's budget among the models by priority and demand (<see cref="Arbitration"/>). Each model's share goes
/// to that model's own memory-pressure actor as <see cref="MemoryProtocol.Share"/>, and from there through its policy
/// planner to its scheduler, which re-places, drops, requeues and grows back as under any budget change. On a GPU node the
/// CPU tier is divided among the models in proportion to their weights; the disk's budget is handed to every model as
/// the node has it.
/// </summary>
public static class ArbiterProtocol
{
    public interface ICommand;

    /// <summary>The work a model holds: the sequences of the larger of its running block and its queue, and the longest workload among them.</summary>
    public sealed record Demand(int Sequences, WorkloadBucket? Bucket);

    /// <summary>
    /// One model under the arbiter. Local only: <paramref name="BytesFor"/> is the model's own sizing (its planner's bytes
    /// for a block of that many sequences, weights included, as its budget counts them).
    /// </summary>
    /// <param name="Memory">The model's memory-pressure actor, which its policy planner follows.</param>
    /// <param name="Scheduler">The model's block scheduler, whose queue and blocks make the demand.</param>
    /// <param name="Static">
    /// FlexGen-style: the share is fixed at the first one the model gets once it has work (what it would have alone beside
    /// the others as they are then), its floor and ceiling from then on.
    /// </param>
    public sealed record Tenant(string Name, int Priority, long? Floor, long? Ceiling, IActorRef Memory, IActorRef Scheduler, Func<Demand, long> BytesFor,
        bool Static = false)
    {
        /// <summary>
        /// The compute-tier bytes the model's tiers hold now; null: not known (a share then rises at once). A share rises
        /// only into bytes the others no longer hold: a model whose share fell keeps its bytes until its scheduler honours
        /// the fall, and growing into them before that would put more on the device than it has.
        /// </summary>
        public Func<long>? Held { get; init; }

        /// <summary>
        /// The compute-tier budget the model's tiers enforce now, in share units; null: not known. A share it was given
        /// stays in force there until its scheduler applies a fall (a rise applies before its weights move in).
        /// </summary>
        public Func<long>? Allowed { get; init; }

        /// <summary>
        /// The bytes of the model's weights: on a GPU node the CPU tier is divided among the models in proportion to them
        /// (each model's weights and their host copies live there). 0: an even split.
        /// </summary>
        public long WeightBytes { get; init; }
    }

    /// <param name="ComputeTier">The tier divided: the GPU on a CUDA node, host memory on a CPU node.</param>
    /// <param name="PollInterval">How often each model's queue is read.</param>
    /// <param name="ChangeThreshold">A share that rises by less than this is not handed on (a fall always is).</param>
    /// <param name="ReleaseAfter">A model's demand counts this long after it was made: its share falls only once it stayed lower.</param>
    /// <param name="ReserveSequences">Sequences a model's demand counts above the larger of its queued and running ones (arrivals not yet seen).</param>
    public sealed record Settings(Tier ComputeTier, TimeSpan PollInterval, long ChangeThreshold, TimeSpan ReleaseAfter, int ReserveSequences = 0);

    public sealed record GetState : ICommand
    {
        public static readonly GetState Instance = new();
    }

    /// <param name="Share">The compute-tier bytes last handed to the model's memory-pressure actor.</param>
    /// <param name="Demand">What its queued and running requests need now.</param>
    /// <param name="Drops">GPU batches dropped from its blocks, and <paramref name="Requeues"/> the sequences requeued with them.</param>
    /// <param name="FixedShare">A static model's share once fixed; null: it follows the division.</param>
    public sealed record TenantState(string Name, int Priority, long Share, long Demand, int Queued, int Running, long? Floor, long? Ceiling,
        long Drops, long Requeues, long RecomputedTokens, long? FixedShare = null);

    /// <param name="Device">The node's budgets, as its memory-pressure actor has them.</param>
    public sealed record State(Tier ComputeTier, TierBudgets Device, IReadOnlyList<TenantState> Tenants);

    /// <param name="deviceMemory">The node's memory-pressure actor (telemetry, configuration, operators).</param>
    public static Props Props(Settings settings, IActorRef deviceMemory, IReadOnlyList<Tenant> tenants) =>
        Akka.Actor.Props.Create(() => new GpuArbiterActor(settings, deviceMemory, tenants));
}
