using ActorInfer.Model.Generation;
using Akka.Actor;

namespace ActorInfer.Actors.Jobs;

/// <summary>
/// The job actor: the node's durable record of accepted jobs and their results (an event-sourced actor on the
/// configured journal). A job is persisted before it is acknowledged; unfinished requests are handed to the block
/// scheduler, on start again after a crash (a request dropped from a running block resumes from its latest
/// persisted checkpoint, not from its prompt); each result is persisted once, and a job's results file is written
/// once all its results are persisted (atomically, so a restarted node never answers twice or half).
/// </summary>
public static class JobProtocol
{
    public interface ICommand;

    /// <summary>
    /// One input line of a job: its result id, a request body (validated JSON) with the seed to use when it names
    /// none, or the error line already decided for it (an invalid line still gets its place in the results).
    /// </summary>
    public sealed record JobEntry(string Id, string? RequestJson, long Seed, string? ErrorLine)
    {
        /// <summary>
        /// The request as the caller parsed it to validate the line (not persisted): the job actor hands it on instead of
        /// parsing the JSON again, which for 1,000 prompts of 512 ids took a third of a second between the job's
        /// acceptance and its first block. Null: the actor parses <see cref="RequestJson"/>.
        /// </summary>
        public CompletionRequest? Request { get; init; }
    }

    /// <summary>Persists a job; a job id already known is acknowledged again without a second copy.</summary>
    /// <param name="Tenant">The owner (HTTP tenant), persisted with the job; null for spool jobs.</param>
    /// <param name="Priority">Persisted with the job and handed to the scheduler with each request (higher first).</param>
    public sealed record SubmitJob(string JobId, IReadOnlyList<JobEntry> Entries, string? Tenant = null, int Priority = 0) : ICommand;

    public sealed record JobAccepted(string JobId, int Requests, bool AlreadyKnown);

    public sealed record GetJob(string JobId) : ICommand;

    /// <summary>
    /// Cancels a job: every line without a result gets a "cancelled" error line (persisted first), queued
    /// requests are withdrawn from the scheduler, and the results file is written. Answered with <see cref="JobStatus"/>;
    /// a finished job is left as it is.
    /// </summary>
    public sealed record CancelJob(string JobId) : ICommand;

    /// <summary>The status of every job of a tenant (all jobs when null), in submission order.</summary>
    public sealed record ListJobs(string? Tenant) : ICommand;

    public sealed record JobList(IReadOnlyList<JobStatus> Jobs);

    /// <param name="Total">Lines of the job; 0 with <paramref name="Known"/> false for an unknown id.</param>
    /// <param name="Failed">Lines whose result is an error line (invalid, failed or cancelled).</param>
    /// <param name="Checkpointed">Lines without a result whose progress is persisted (they were dropped from a block):
    /// after a restart they resume from there.</param>
    public sealed record JobStatus(string JobId, bool Known, int Total, int Done, string? Tenant = null, int Priority = 0,
        bool Cancelled = false, int Failed = 0, int Checkpointed = 0)
    {
        public bool IsComplete => Known && Done == Total;

        /// <summary>queued, running, completed, cancelled or failed (every line an error).</summary>
        public string State => !Known ? "unknown"
            : Cancelled ? "cancelled"
            : IsComplete ? (Failed == Total && Total > 0 ? "failed" : "completed")
            : Done > 0 ? "running" : "queued";
    }

    /// <summary>The error line that a cancelled job's unfinished lines get.</summary>
    public static string CancelledLine(string id, int lineNumber) =>
        CompletionJson.ErrorLine(id, lineNumber, "", "the job was cancelled before this request finished");

    /// <summary>Sends <see cref="JobCompleted"/> to the observer for every job completed from now on.</summary>
    public sealed record Observe(IActorRef Observer) : ICommand;

    public sealed record JobCompleted(string JobId, string ResultsPath, int Lines);

    /// <summary>
    /// A job's entries from its JSONL lines, every line checked as `actorinfer generate` checks it: a bad line becomes
    /// its error line, a request without a seed gets <paramref name="requestSeed"/> + its line number, blank lines
    /// are skipped (but counted), so the results equal `generate --keep-going`'s for the same file.
    /// </summary>
    public static List<JobEntry> Entries(IEnumerable<string> lines, CompletionFactory factory, long requestSeed)
    {
        var entries = new List<JobEntry>();
        var lineNumber = 0;
        foreach (var raw in lines)
        {
            lineNumber++;
            if (Entry(raw, lineNumber, factory, requestSeed, out _) is { } entry) entries.Add(entry);
        }
        return entries;
    }

    /// <summary>
    /// One line of a job (numbered from 1): null when blank; an entry with its error line when invalid, the reason in
    /// <paramref name="invalid"/>.
    /// </summary>
    public static JobEntry? Entry(string raw, int lineNumber, CompletionFactory factory, long requestSeed, out RequestValidationException? invalid)
    {
        invalid = null;
        if (string.IsNullOrWhiteSpace(raw)) return null;
        var fallbackId = $"line-{lineNumber}";
        var seed = requestSeed + lineNumber;
        try
        {
            var request = CompletionRequestParser.Parse(raw);
            factory.Create(request, seed);
            return new JobEntry(request.Id ?? fallbackId, raw, seed, null) { Request = request };
        }
        catch (RequestValidationException ex)
        {
            invalid = ex;
            return new JobEntry(fallbackId, null, seed, CompletionJson.ErrorLine(fallbackId, lineNumber, ex.Param, ex.Message));
        }
    }

    /// <summary>
    /// Forgets every job finished longer ago than the retention (persisted as <see cref="JobEvents.Expired"/>, results
    /// files deleted). The job actor sends it to itself on a timer; a test sends it after moving its clock.
    /// </summary>
    public sealed record ExpireFinished : ICommand
    {
        public static readonly ExpireFinished Instance = new();
    }

    /// <summary>How long finished jobs are kept, the clock that says when they finished, and how often they are swept.</summary>
    public sealed record Retention(TimeSpan KeepFor, TimeProvider Clock)
    {
        /// <summary>A tenth of the retention, between 100 ms and a minute: a job outlives its retention by at most that.</summary>
        public TimeSpan SweepEvery => TimeSpan.FromTicks(Math.Clamp(KeepFor.Ticks / 10, TimeSpan.TicksPerMillisecond * 100, TimeSpan.TicksPerMinute));

        public static Retention Of(TimeSpan keepFor) => new(keepFor, TimeProvider.System);
    }

    /// <param name="scheduler">The block scheduler that runs the requests.</param>
    /// <param name="resultsDir">Where `JOB.jsonl` results files are written.</param>
    /// <param name="retention">How long finished jobs are kept; null keeps them for good (tests of recovery only).</param>
    public static Props Props(string persistenceId, IActorRef scheduler, string resultsDir, int snapshotEvery, Retention? retention = null) =>
        Akka.Actor.Props.Create(() => new JobActor(persistenceId, scheduler, resultsDir, snapshotEvery, retention));
}

/// <summary>The persisted events and snapshot of the job actor: plain arrays and strings, stable on disk.</summary>
public static class JobEvents
{
    /// <param name="At">When it was persisted (Unix milliseconds): a job of invalid lines only is finished then.
    /// Null in events persisted before retention existed; such a job counts as finished when the node recovers it.</param>
    public sealed record Accepted(string JobId, string[] Ids, string?[] Requests, long[] Seeds, string?[] Errors,
        string? Tenant = null, int Priority = 0, long? At = null);

    /// <param name="At">When it was persisted (Unix milliseconds), the job's finishing time; null in older events.</param>
    public sealed record Cancelled(string JobId, long? At = null);

    /// <summary>The results of one block, persisted as one event so a block counts as done all at once.</summary>
    /// <param name="At">When it was persisted (Unix milliseconds): the finishing time of the jobs it completes; null in older events.</param>
    public sealed record ResultsRecorded(string[] Keys, string[] Lines, long? At = null);

    /// <summary>Finished jobs past their retention, forgotten from here on (their results files are deleted).</summary>
    public sealed record Expired(string[] JobIds);

    /// <summary>
    /// Where a sequence dropped from a running block stopped: its generated tokens with their log-probabilities, and
    /// its prompt's. With the request's seed (persisted with the job) this is its whole sampling state: the sampler
    /// draws the k-th token from (seed, k), so the token count is the random generator's position.
    /// </summary>
    public sealed record SequenceCheckpoint(int[] OutputIds, float[] OutputLogprobs, float?[]? PromptLogprobs);

    /// <summary>
    /// The checkpoints of the sequences one drop requeued, as one event; a request's latest checkpoint replaces its
    /// earlier one, and its result replaces both.
    /// </summary>
    public sealed record Checkpointed(string[] Keys, SequenceCheckpoint[] Checkpoints);

    /// <param name="Checkpoints">Per line, the latest checkpoint of a request without a result; null in snapshots
    /// taken before checkpoints were persisted.</param>
    /// <param name="FinishedAt">When the job finished (Unix milliseconds); null while it runs, and in snapshots taken
    /// before retention existed.</param>
    public sealed record JobSnapshot(string JobId, string[] Ids, string?[] Requests, long[] Seeds, string?[] Lines,
        string? Tenant = null, int Priority = 0, bool Cancelled = false, SequenceCheckpoint?[]? Checkpoints = null, long? FinishedAt = null);

    public sealed record Snapshot(JobSnapshot[] Jobs);
}
