using ActorInfer.Actors.Scheduling;
using Akka.Actor;

namespace ActorInfer.Actors.Routing;

/// <summary>
/// Work between a gateway and the workers of a cluster. A worker-only node runs a worker endpoint (at
/// <c>/user/worker</c>) in front of its block scheduler; a gateway-only node runs a work dispatcher in the block
/// scheduler's place, so its job actor is the same as a node alone's. The dispatcher hands requests to the workers by the
/// capacity each reports (each takes a share of the unfinished work in proportion to its slots, at least its slots), keeps
/// what each worker holds, and when a worker leaves or is downed hands its unfinished requests to the others, each from
/// its latest checkpoint.
/// A request finishes once: the job actor persists the first result of a line and ignores any later one.
/// Every message here crosses nodes: plain strings, numbers and arrays.
/// </summary>
public static class WorkerProtocol
{
    /// <summary>The worker endpoint's name under /user.</summary>
    public const string EndpointName = "worker";

    /// <summary>
    /// One request for a worker: its scheduler key and result id, the request's JSON as persisted, its seed and priority,
    /// and where it stopped when it was checkpointed (null arrays: from its prompt).
    /// </summary>
    public sealed record WorkOrder(string Key, string Id, string RequestJson, long Seed, int Priority,
        int[]? OutputIds = null, float[]? OutputLogprobs = null, float?[]? PromptLogprobs = null)
    {
        public static WorkOrder From(SchedulerProtocol.WorkItem item) =>
            new(item.Key, item.Id, item.RequestJson ?? throw new ArgumentException($"request {item.Key} carries no JSON body to send"),
                item.Seed, item.Priority, item.Resume?.OutputIds.ToArray(), item.Resume?.OutputLogprobs.ToArray(), item.Resume?.PromptLogprobs?.ToArray());
    }

    /// <summary>Requests for the receiving worker; a key it already holds is not run twice (its results go to the newest sender).</summary>
    public sealed record Assign(WorkOrder[] Orders);

    /// <summary>Withdraws queued requests (a cancelled job); requests in a running block finish.</summary>
    public sealed record Withdraw(string[] Keys);

    /// <summary>A dispatcher introduces itself; the worker answers with its <see cref="Capacity"/>.</summary>
    public sealed record Hello
    {
        public static readonly Hello Instance = new();
    }

    /// <summary>
    /// What a worker can take: <paramref name="Slots"/> requests at least (two blocks of its current policy; its weight in
    /// the dispatcher's shares), of which it
    /// holds <paramref name="Held"/>; <paramref name="Received"/> counts every order it has received, so that the
    /// dispatcher can subtract what is still on its way.
    /// </summary>
    public sealed record Capacity(int Slots, int Held, long Received, int Queued, string Device);

    /// <summary>Finished requests (result or error lines), one block's at a time.</summary>
    public sealed record Results(string[] Keys, string[] Lines);

    /// <summary>Where requests dropped from a running block stopped (per key: output ids, their log-probabilities, the prompt's).</summary>
    public sealed record Checkpoints(string[] Keys, int[][] OutputIds, float[][] OutputLogprobs, float?[]?[] PromptLogprobs);

    /// <summary>
    /// Tokens a step chose for streaming requests (per key: the index of the first of its ids, the ids, their
    /// log-probabilities where the request asks for them), as the worker's scheduler published them
    /// (<see cref="SchedulerProtocol.TokensLanded"/>): the gateway publishes them again on its own event stream, for its
    /// streaming completions.
    /// </summary>
    public sealed record Tokens(string[] Keys, int[] From, int[][] Ids, float[]?[] Logprobs);

    /// <summary>Asks a dispatcher for <see cref="WorkerList"/>.</summary>
    public sealed record GetWorkers
    {
        public static readonly GetWorkers Instance = new();
    }

    /// <param name="Address">The worker's cluster address (a restarted worker on the same port keeps it).</param>
    /// <param name="Up">Whether it is a member now; workers that left stay listed with what they completed.</param>
    public sealed record WorkerInfo(string Address, bool Up, string Device, int Slots, int Assigned, long Completed);

    /// <param name="Pending">Requests waiting for a worker's capacity.</param>
    public sealed record WorkerList(IReadOnlyList<WorkerInfo> Workers, int Pending, long Redispatched);

    /// <summary>The endpoint on a worker node in front of its block scheduler.</summary>
    /// <param name="boundSlots">Slots when the scheduler has no policy yet: two blocks at the scheduler's bounds.</param>
    public static Props EndpointProps(IActorRef scheduler, int boundSlots, string device) =>
        Props.Create(() => new WorkerEndpointActor(scheduler, boundSlots, device));

    /// <summary>The dispatcher on a gateway node, in the block scheduler's place (it answers the scheduler's protocol).</summary>
    public static Props DispatcherProps() => Props.Create(() => new WorkDispatcherActor());
}
