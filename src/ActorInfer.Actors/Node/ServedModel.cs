using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Planner;
using ActorInfer.Model.Generation;
using Akka.Actor;

namespace ActorInfer.Actors.Node;

/// <summary>One model a node serves, with the actors that run it.</summary>
/// <param name="Factory">Validates requests against the model (tokenizer, context length) and decodes its results.</param>
/// <param name="Memory">The model's memory-pressure actor (on a node of several models, the one the GPU arbiter hands its share to).</param>
/// <param name="Scheduler">The model's block scheduler.</param>
/// <param name="TierActors">Its offload-tier actors: the compute tier's, and on a GPU node the CPU tier's.</param>
/// <param name="PolicyPlanner">The planner behind its planner actor; null on a gateway without the worker role.</param>
/// <param name="LargestBlockBytes">The compute tier's budget that holds its largest block, every weight on it.</param>
public sealed record ServedModel(ServedModelSettings Settings, CompletionFactory Factory, IActorRef Memory, IActorRef Planner, IActorRef Scheduler,
    IReadOnlyList<IActorRef> TierActors, WorkloadPlanner? PolicyPlanner, long LargestBlockBytes)
{
    public string Name => Settings.Name;
}
