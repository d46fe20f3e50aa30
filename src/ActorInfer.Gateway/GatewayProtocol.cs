using ActorInfer.Actors.Jobs;
using Akka.Actor;

namespace ActorInfer.Gateway;

/// <summary>
/// The gateway actor admits work from HTTP: it enforces each tenant's queue limit, persists the work through the
/// job actor (a completion is a one-request job) and answers <see cref="Admitted"/> only once the job is persisted;
/// it routes each finished job's result back to a waiting request, and keeps the metrics fed (tokens, budgets,
/// policy changes).
/// </summary>
public static class GatewayProtocol
{
    public interface ICommand;

    /// <param name="Result">Completed with the job's first results line when the job finishes (completions);
    /// a local-only message: the task source never leaves the node.</param>
    public sealed record Admit(string Tenant, int MaxQueued, string JobId, IReadOnlyList<JobProtocol.JobEntry> Entries, int Priority,
        string Kind, TaskCompletionSource<string>? Result) : ICommand;

    /// <param name="AlreadyKnown">The job id was persisted before (a retry with the same idempotency key): nothing new runs.</param>
    public sealed record Admitted(string JobId, int Requests, bool AlreadyKnown = false);

    /// <summary>
    /// The tenant is over its limit of queued requests; nothing was persisted. <paramref name="Never"/>: the work alone
    /// is larger than the limit, so waiting will not help.
    /// </summary>
    public sealed record Refused(string Reason, bool Never = false);

    /// <summary>Stops routing a job's result to this waiter (the HTTP request went away or gave up).</summary>
    public sealed record Forget(string JobId, TaskCompletionSource<string> Result) : ICommand;

    public sealed record GetQueues : ICommand
    {
        public static readonly GetQueues Instance = new();
    }

    public sealed record Queues(IReadOnlyDictionary<string, int> QueuedByTenant);

    public static Props Props(IActorRef jobs, IActorRef memory, IActorRef planner, IActorRef scheduler, GatewayMetrics metrics, TimeSpan persistTimeout) =>
        Akka.Actor.Props.Create(() => new GatewayActor(jobs, memory, planner, scheduler, metrics, persistTimeout));
}
