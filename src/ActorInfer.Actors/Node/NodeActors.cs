using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Layers;
using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using ActorInfer.Model.Generation;
using TierSet = ActorInfer.Runtime.Tiers.TierSet;
using Akka.Actor;

namespace ActorInfer.Actors.Node;

/// <summary>What the deciding and running actors of a node are built from.</summary>
/// <param name="Engine">The engine the layer actors and the scheduler drive.</param>
/// <param name="Tiers">The runtime's tiers, each owned by an offload-tier actor.</param>
/// <param name="ComputeTier">The budget that governs the runtime's device tier: the GPU's, or host memory's on a CPU node.</param>
/// <param name="CpuTierActor">Whether the CPU tier has an actor of its own (not when host memory is the compute tier).</param>
/// <param name="Planner">The policy planner behind the policy-planner actor.</param>
/// <param name="Buckets">How requests are grouped by length into blocks; null: any request joins any block.</param>
/// <param name="Memory">The memory-pressure actor's configured budgets and telemetry settings.</param>
/// <param name="Probe">Telemetry; null to take budgets only from the configuration and operator commands.</param>
/// <param name="MaxWaitForMemory">How long queued requests wait while nothing fits; null: forever.</param>
public sealed record NodeParts(IInferenceEngine Engine, CompletionFactory Factory, TierSet Tiers, Tier ComputeTier, bool CpuTierActor,
    IPolicyPlanner Planner, BucketRule? Buckets, MemoryProtocol.Settings Memory, IMemoryProbe? Probe, TimeSpan? MaxWaitForMemory)
{
    /// <summary>Conservative block sizing: the recent blocks whose budget falls set a new block's headroom (0: none).</summary>
    public int HeadroomHistory { get; init; }

    /// <summary>Under conservative sizing, the firm parts' ceiling of a lower-priority model of several (its memory floor); null: none.</summary>
    public long? FirmFloor { get; init; }

    /// <summary>On a node of several models, whether this one alone has the node's top priority (<see cref="Planner.PlannerProtocol.Headroom.SoleTopPriority"/>).</summary>
    public bool SoleTopPriority { get; init; }

    /// <summary>
    /// The dispatcher (one dedicated thread) of the layer actors and the scheduler: the node's one tensor thread, or on a
    /// node of several models each model's own, so that one model's host-side work never holds up another's.
    /// </summary>
    public string TensorDispatcher { get; init; } = Configuration.ActorInferSettings.TensorDispatcher;

    /// <summary>The device's turns under one queue without priorities, shared by the node's models; null: none.</summary>
    public Scheduling.DeviceTurns? Turns { get; init; }
}

/// <summary>
/// The actors that decide and run, the same in a served node and in `generate` and `bench`: the memory-pressure actor
/// (every budget change enters here, from telemetry, `/admin/pressure` or a replayed schedule), the offload-tier actors,
/// the policy-planner actor, one layer actor per decoder layer and the block scheduler.
/// </summary>
public sealed record NodeActors(IActorRef Memory, IReadOnlyList<IActorRef> Tiers, IActorRef Planner, IReadOnlyList<IActorRef> Layers, IActorRef Scheduler)
{
    public static NodeActors Start(ActorSystem system, NodeParts parts) => Start(system, parts, "");

    /// <param name="namePrefix">Put before every actor's name: several models' actor sets live side by side in one system.</param>
    public static NodeActors Start(ActorSystem system, NodeParts parts, string namePrefix)
    {
        var memory = system.ActorOf(MemoryProtocol.Props(parts.Memory, parts.Probe), namePrefix + "memory");
        var tiers = new List<IActorRef>
        {
            // The tiers hold what the engine applies at layer boundaries; the actors account it and follow the budgets.
            system.ActorOf(ActorInfer.Actors.Tiers.TierProtocol.Props(parts.ComputeTier, parts.Tiers.Device, memory, enforce: false), namePrefix + "tier-device"),
        };
        if (parts.CpuTierActor)
            tiers.Add(system.ActorOf(ActorInfer.Actors.Tiers.TierProtocol.Props(Tier.Cpu, parts.Tiers.Cpu, memory, enforce: false), namePrefix + "tier-cpu"));
        var planner = system.ActorOf(PlannerProtocol.Props(parts.Planner, memory, new PlannerProtocol.Headroom(parts.ComputeTier, parts.HeadroomHistory) { Floor = parts.FirmFloor, SoleTopPriority = parts.SoleTopPriority }),
            namePrefix + "planner");
        var layers = Enumerable.Range(0, parts.Engine.Config.NumHiddenLayers)
            .Select(i => system.ActorOf(LayerProtocol.Props(new LayerIndex(i), parts.Engine).WithDispatcher(parts.TensorDispatcher), $"{namePrefix}layer-{i}"))
            .ToArray();
        var scheduler = system.ActorOf(SchedulerProtocol.Props(parts.Engine, parts.Factory, layers, planner, parts.MaxWaitForMemory, parts.Buckets, parts.Turns)
                .WithDispatcher(parts.TensorDispatcher),
            namePrefix + "scheduler");
        // The planner learns from the blocks how far budgets fell while they ran.
        if (parts.HeadroomHistory > 0) scheduler.Tell(new SchedulerProtocol.Observe(planner));
        return new NodeActors(memory, tiers, planner, layers, scheduler);
    }
}
