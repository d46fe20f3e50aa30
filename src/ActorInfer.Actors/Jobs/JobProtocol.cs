using Akka.Actor;

namespace ActorInfer.Actors.Jobs;

/// <summary>
/// The job actor: the node's durable record of accepted jobs and their results (an event-sourced actor on the
/// configured journal). A job is persisted before it is acknowledged; unfinished requests are handed to the block
/// scheduler, on start again after a crash; each result is persisted once, and a job's results file is written
/// once all its results are persisted (atomically, so a restarted node never answers twice or half).
/// </summary>
public static class JobProtocol
{
    public interface ICommand;

    /// <summary>
    /// One input line of a job: its result id, a request body (validated JSON) with the seed to use when it names
    /// none, or the error line already decided for it (an invalid line still gets its place in the results).
    /// </summary>
    public sealed record JobEntry(string Id, string? RequestJson, long Seed, string? ErrorLine);

    /// <summary>Persists a job; a job id already known is acknowledged again without a second copy.</summary>
    public sealed record SubmitJob(string JobId, IReadOnlyList<JobEntry> Entries) : ICommand;

    public sealed record JobAccepted(string JobId, int Requests, bool AlreadyKnown);

    public sealed record GetJob(string JobId) : ICommand;

    /// <param name="Total">Lines of the job; 0 with <paramref name="Known"/> false for an unknown id.</param>
    public sealed record JobStatus(string JobId, bool Known, int Total, int Done);

    /// <summary>Sends <see cref="JobCompleted"/> to the observer for every job completed from now on.</summary>
    public sealed record Observe(IActorRef Observer) : ICommand;

    public sealed record JobCompleted(string JobId, string ResultsPath, int Lines);

    /// <param name="scheduler">The block scheduler that runs the requests.</param>
    /// <param name="resultsDir">Where `JOB.jsonl` results files are written.</param>
    public static Props Props(string persistenceId, IActorRef scheduler, string resultsDir, int snapshotEvery) =>
        Akka.Actor.Props.Create(() => new JobActor(persistenceId, scheduler, resultsDir, snapshotEvery));
}

/// <summary>The persisted events and snapshot of the job actor: plain arrays and strings, stable on disk.</summary>
public static class JobEvents
{
    public sealed record Accepted(string JobId, string[] Ids, string?[] Requests, long[] Seeds, string?[] Errors);

    /// <summary>The results of one block, persisted as one event so a block counts as done all at once.</summary>
    public sealed record ResultsRecorded(string[] Keys, string[] Lines);

    public sealed record JobSnapshot(string JobId, string[] Ids, string?[] Requests, long[] Seeds, string?[] Lines);

    public sealed record Snapshot(JobSnapshot[] Jobs);
}
