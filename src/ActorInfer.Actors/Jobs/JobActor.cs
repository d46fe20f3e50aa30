using ActorInfer.Actors.Scheduling;
using ActorInfer.Model.Generation;
using Akka.Actor;
using Akka.Event;
using Akka.Persistence;
using static ActorInfer.Actors.Jobs.JobProtocol;

namespace ActorInfer.Actors.Jobs;

internal sealed class JobActor : ReceivePersistentActor, IWithTimers
{
    private readonly IActorRef _scheduler;
    private readonly string _resultsDir;
    private readonly int _snapshotEvery;
    private readonly Retention? _retention;
    private readonly TimeProvider _clock;
    /// <summary>Jobs expired in replayed events: their results files are deleted once recovery shows no newer job of that id.</summary>
    private readonly HashSet<string> _expiredInRecovery = [];
    private readonly Dictionary<string, Job> _jobs = [];
    private readonly List<string> _order = [];
    private readonly HashSet<IActorRef> _observers = [];
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private int _sinceSnapshot;

    public JobActor(string persistenceId, IActorRef scheduler, string resultsDir, int snapshotEvery, Retention? retention)
    {
        PersistenceId = persistenceId;
        _scheduler = scheduler;
        _resultsDir = resultsDir;
        _snapshotEvery = snapshotEvery;
        _retention = retention;
        _clock = retention?.Clock ?? TimeProvider.System;

        Recover<JobEvents.Accepted>(Apply);
        Recover<JobEvents.ResultsRecorded>(Apply);
        Recover<JobEvents.Cancelled>(Apply);
        Recover<JobEvents.Checkpointed>(Apply);
        Recover<JobEvents.Expired>(Apply);
        Recover<SnapshotOffer>(offer =>
        {
            if (offer.Snapshot is not JobEvents.Snapshot s) return;
            foreach (var j in s.Jobs)
            {
                var job = new Job(j.JobId, j.Ids, j.Requests, j.Seeds, j.Lines, j.Tenant, j.Priority) { Cancelled = j.Cancelled };
                if (j.Checkpoints is { } checkpoints) checkpoints.CopyTo(job.Checkpoints, 0);
                job.FinishedAt = j.FinishedAt;
                NoteFinished(job, null);
                _jobs[j.JobId] = job;
                _order.Add(j.JobId);
            }
        });
        Recover<RecoveryCompleted>(_ => Resume());

        Command<SubmitJob>(Submit);
        Command<SchedulerProtocol.Finished>(Record);
        Command<SchedulerProtocol.Checkpointed>(Record);
        Command<GetJob>(m => Sender.Tell(_jobs.TryGetValue(m.JobId, out var job) ? job.Status() : new JobStatus(m.JobId, false, 0, 0)));
        Command<ListJobs>(m => Sender.Tell(new JobList(_order.Select(id => _jobs[id])
            .Where(j => m.Tenant is null || j.Tenant == m.Tenant).Select(j => j.Status()).ToList())));
        Command<CancelJob>(Cancel);
        Command<ExpireFinished>(_ => Expire());
        Command<Observe>(m =>
        {
            if (_observers.Add(m.Observer)) Context.Watch(m.Observer);
        });
        Command<Terminated>(m => _observers.Remove(m.ActorRef));
        // The snapshot holds everything: the events before it and the older snapshots (with jobs expired since) go.
        Command<SaveSnapshotSuccess>(m =>
        {
            DeleteMessages(m.Metadata.SequenceNr);
            DeleteSnapshots(new SnapshotSelectionCriteria(m.Metadata.SequenceNr - 1));
        });
        Command<SaveSnapshotFailure>(m => _log.Warning("snapshot failed: {0}", m.Cause.Message));
        Command<DeleteMessagesSuccess>(_ => { });
        Command<DeleteMessagesFailure>(m => _log.Warning("deleting journaled events failed: {0}", m.Cause.Message));
        Command<DeleteSnapshotsSuccess>(_ => { });
        Command<DeleteSnapshotsFailure>(m => _log.Warning("deleting old snapshots failed: {0}", m.Cause.Message));
    }

    public override string PersistenceId { get; }

    public ITimerScheduler Timers { get; set; } = null!;

    private long Now => _clock.GetUtcNow().ToUnixTimeMilliseconds();

    private void Submit(SubmitJob m)
    {
        if (_jobs.TryGetValue(m.JobId, out var known))
        {
            Sender.Tell(new JobAccepted(m.JobId, known.Lines.Length, AlreadyKnown: true));
            return;
        }
        var accepted = new JobEvents.Accepted(m.JobId, m.Entries.Select(e => e.Id).ToArray(),
            m.Entries.Select(e => e.RequestJson).ToArray(), m.Entries.Select(e => e.Seed).ToArray(), m.Entries.Select(e => e.ErrorLine).ToArray(),
            m.Tenant, m.Priority, Now);
        var sender = Sender;
        Persist(accepted, e =>
        {
            Apply(e);
            sender.Tell(new JobAccepted(e.JobId, e.Requests.Length, AlreadyKnown: false));
            _log.Info("job {0} accepted: {1} lines", e.JobId, e.Requests.Length);
            var job = _jobs[e.JobId];
            Run(job, m.Entries.Select(entry => entry.Request).ToArray());
            CompleteIfDone(job);
        });
    }

    private void Cancel(CancelJob m)
    {
        if (!_jobs.TryGetValue(m.JobId, out var job))
        {
            Sender.Tell(new JobStatus(m.JobId, false, 0, 0));
            return;
        }
        if (job.IsComplete)
        {
            Sender.Tell(job.Status());
            return;
        }
        var sender = Sender;
        var keys = Enumerable.Range(0, job.Lines.Length).Where(i => job.Lines[i] is null).Select(i => Key(job.Id, i)).ToArray();
        Persist(new JobEvents.Cancelled(m.JobId, Now), e =>
        {
            Apply(e);
            _scheduler.Tell(new SchedulerProtocol.Withdraw(keys));
            _log.Info("job {0} cancelled: {1} requests withdrawn", job.Id, keys.Length);
            sender.Tell(job.Status());
            CompleteIfDone(job);
        });
    }

    private void Record(SchedulerProtocol.Finished m)
    {
        var fresh = m.Results.Where(r => Locate(r.Key) is { } at && at.Job.Lines[at.Index] is null).ToArray();
        if (fresh.Length == 0) return;
        Persist(new JobEvents.ResultsRecorded(fresh.Select(r => r.Key).ToArray(), fresh.Select(r => r.ResultLine).ToArray(), Now), e =>
        {
            Apply(e);
            foreach (var job in e.Keys.Select(k => Locate(k)!.Value.Job).Distinct())
                _log.Info("job {0}: {1}/{2} done", job.Id, job.Done, job.Lines.Length);
            foreach (var job in e.Keys.Select(k => Locate(k)!.Value.Job).Distinct().ToArray())
                CompleteIfDone(job);
            SnapshotNowAndThen();
        });
    }

    /// <summary>Persists where dropped sequences stopped, so that after a crash they resume from there.</summary>
    private void Record(SchedulerProtocol.Checkpointed m)
    {
        var fresh = m.Items.Where(c => Locate(c.Key) is { } at && at.Job.Lines[at.Index] is null).ToArray();
        if (fresh.Length == 0) return;
        var e = new JobEvents.Checkpointed(fresh.Select(c => c.Key).ToArray(), fresh.Select(c => new JobEvents.SequenceCheckpoint(
            c.Checkpoint.OutputIds.ToArray(), c.Checkpoint.OutputLogprobs.ToArray(), c.Checkpoint.PromptLogprobs?.ToArray())).ToArray());
        Persist(e, persisted =>
        {
            Apply(persisted);
            _log.Info("block {0}: checkpoints of {1} dropped requests persisted", m.Block, persisted.Keys.Length);
            SnapshotNowAndThen();
        });
    }

    /// <summary>
    /// Forgets the jobs finished longer ago than the retention: one event for all of them, then their results files go
    /// (a retry of one of their idempotency keys is new work from then on). Each counts towards the next snapshot.
    /// </summary>
    private void Expire()
    {
        if (_retention is null) return;
        var cutoff = Now - (long)_retention.KeepFor.TotalMilliseconds;
        var expired = _order.Where(id => _jobs[id].FinishedAt <= cutoff).ToArray();
        if (expired.Length == 0) return;
        Persist(new JobEvents.Expired(expired), e =>
        {
            Apply(e);
            foreach (var id in e.JobIds) DeleteResults(id);
            _log.Info("{0} finished jobs expired after {1}; {2} kept", e.JobIds.Length, _retention.KeepFor, _order.Count);
            SnapshotNowAndThen(e.JobIds.Length);
        });
    }

    private void DeleteResults(string jobId)
    {
        try
        {
            File.Delete(ResultsPath(jobId));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            _log.Warning("the results file of expired job {0} could not be deleted: {1}", jobId, ex.Message);
        }
    }

    /// <summary>
    /// A snapshot replaces the journal (deleted once it is saved): results, checkpoints and expiries all count. Each
    /// snapshot rewrites the whole store, so it waits for at least as many events as the store holds jobs: however large
    /// the store, an event then costs at most about one job's share of a snapshot, and recovery replays no more events.
    /// </summary>
    private void SnapshotNowAndThen(int events = 1)
    {
        _sinceSnapshot += events;
        if (_sinceSnapshot < Math.Max(_snapshotEvery, _jobs.Count)) return;
        _sinceSnapshot = 0;
        SaveSnapshot(new JobEvents.Snapshot(_order.Select(id => _jobs[id].ToSnapshot()).ToArray()));
    }

    private void Apply(JobEvents.Accepted e)
    {
        var lines = new string?[e.Requests.Length];
        for (var i = 0; i < lines.Length; i++) lines[i] = e.Errors[i];
        var job = new Job(e.JobId, e.Ids, e.Requests, e.Seeds, lines, e.Tenant, e.Priority);
        _jobs[e.JobId] = job;
        _order.Add(e.JobId);
        NoteFinished(job, e.At);
    }

    private void Apply(JobEvents.Expired e)
    {
        var gone = e.JobIds.Where(_jobs.Remove).ToHashSet();
        _order.RemoveAll(gone.Contains);
        if (IsRecovering) _expiredInRecovery.UnionWith(gone);
    }

    /// <summary>
    /// Stamps a job that has just finished with its finishing time: the event's, or now for events persisted before
    /// retention existed (such a job is kept for the whole retention from the node's start).
    /// </summary>
    private void NoteFinished(Job job, long? at)
    {
        if (job.FinishedAt is null && job.IsComplete) job.FinishedAt = at ?? Now;
    }

    private void Apply(JobEvents.Cancelled e)
    {
        if (!_jobs.TryGetValue(e.JobId, out var job)) return;
        job.Cancelled = true;
        for (var i = 0; i < job.Lines.Length; i++)
            job.Lines[i] ??= CancelledLine(job.Ids[i], i + 1);
        Array.Clear(job.Checkpoints);
        NoteFinished(job, e.At);
    }

    private void Apply(JobEvents.ResultsRecorded e)
    {
        var touched = new HashSet<Job>(ReferenceEqualityComparer.Instance);
        for (var i = 0; i < e.Keys.Length; i++)
            if (Locate(e.Keys[i]) is { } at && at.Job.Lines[at.Index] is null)
            {
                at.Job.Lines[at.Index] = e.Lines[i];
                at.Job.Checkpoints[at.Index] = null;
                touched.Add(at.Job);
            }
        foreach (var job in touched) NoteFinished(job, e.At);
    }

    private void Apply(JobEvents.Checkpointed e)
    {
        for (var i = 0; i < e.Keys.Length; i++)
            if (Locate(e.Keys[i]) is { } at && at.Job.Lines[at.Index] is null)
                at.Job.Checkpoints[at.Index] = e.Checkpoints[i];
    }

    /// <summary>
    /// After recovery: every unfinished request runs again (from its latest checkpoint when it was dropped from a
    /// block, from its prompt otherwise), and every complete job has its results file.
    /// </summary>
    private void Resume()
    {
        var (pending, resumed) = (0, 0);
        foreach (var id in _order)
        {
            var job = _jobs[id];
            var (run, fromCheckpoint) = Run(job);
            pending += run;
            resumed += fromCheckpoint;
            if (job.IsComplete && !File.Exists(ResultsPath(id))) CompleteIfDone(job);
        }
        // An expiry whose results files were not all deleted before the node stopped; a job of the same id accepted
        // after it (a retry with its idempotency key) keeps its own.
        foreach (var id in _expiredInRecovery.Where(id => !_jobs.ContainsKey(id))) DeleteResults(id);
        _expiredInRecovery.Clear();
        _log.Info("recovered {0} jobs, {1} requests to run, {2} of them from checkpoints", _order.Count, pending, resumed);
        if (_retention is not null) Timers.StartPeriodicTimer("expire", ExpireFinished.Instance, TimeSpan.Zero, _retention.SweepEvery);
    }

    /// <param name="parsed">Each line's request as parsed at submission, by line (null where it was not): parsed again otherwise.</param>
    private (int Requests, int FromCheckpoint) Run(Job job, IReadOnlyList<CompletionRequest?>? parsed = null)
    {
        var items = new List<SchedulerProtocol.WorkItem>();
        for (var i = 0; i < job.Lines.Length; i++)
        {
            if (job.Lines[i] is not null || job.Requests[i] is not { } json) continue;
            var resume = job.Checkpoints[i] is { } c ? new SchedulerProtocol.Checkpoint(c.OutputIds, c.OutputLogprobs, c.PromptLogprobs) : null;
            items.Add(new SchedulerProtocol.WorkItem(Key(job.Id, i), job.Ids[i],
                (parsed is not null && i < parsed.Count ? parsed[i] : null) ?? CompletionRequestParser.Parse(json), job.Seeds[i], job.Priority)
            {
                Resume = resume,
                RequestJson = json,
            });
        }
        if (items.Count > 0) _scheduler.Tell(new SchedulerProtocol.Enqueue(items));
        return (items.Count, items.Count(i => i.Resume is not null));
    }

    private void CompleteIfDone(Job job)
    {
        if (!job.IsComplete) return;
        var path = ResultsPath(job.Id);
        Directory.CreateDirectory(_resultsDir);
        var temp = path + ".tmp";
        File.WriteAllLines(temp, job.Lines!);
        File.Move(temp, path, overwrite: true);
        _log.Info("job {0} complete: {1}", job.Id, path);
        foreach (var o in _observers) o.Tell(new JobCompleted(job.Id, path, job.Lines.Length));
    }

    private string ResultsPath(string jobId) => Path.Combine(_resultsDir, jobId + ".jsonl");

    private static string Key(string jobId, int index) => $"{jobId}#{index}";

    private (Job Job, int Index)? Locate(string key)
    {
        var hash = key.LastIndexOf('#');
        if (hash < 0 || !int.TryParse(key[(hash + 1)..], out var index)) return null;
        return _jobs.TryGetValue(key[..hash], out var job) && index < job.Lines.Length ? (job, index) : null;
    }

    private sealed class Job(string id, string[] ids, string?[] requests, long[] seeds, string?[] lines, string? tenant, int priority)
    {
        public string Id { get; } = id;
        public string? Tenant { get; } = tenant;
        public int Priority { get; } = priority;
        public bool Cancelled { get; set; }
        /// <summary>When the last line got its result or the job was cancelled (Unix milliseconds); null while it runs.</summary>
        public long? FinishedAt { get; set; }
        public string[] Ids { get; } = ids;
        public string?[] Requests { get; } = requests;
        public long[] Seeds { get; } = seeds;
        /// <summary>The result (or error) line of each input line; null while it runs.</summary>
        public string?[] Lines { get; } = lines;
        /// <summary>The latest checkpoint of each line without a result that was dropped from a block; null otherwise.</summary>
        public JobEvents.SequenceCheckpoint?[] Checkpoints { get; } = new JobEvents.SequenceCheckpoint?[lines.Length];
        public int Done => Lines.Count(l => l is not null);
        public bool IsComplete => Lines.All(l => l is not null);
        public JobEvents.JobSnapshot ToSnapshot() =>
            new(Id, Ids, Requests, Seeds, (string?[])Lines.Clone(), Tenant, Priority, Cancelled,
                Checkpoints.Any(c => c is not null) ? (JobEvents.SequenceCheckpoint?[])Checkpoints.Clone() : null, FinishedAt);

        public JobStatus Status() =>
            new(Id, true, Lines.Length, Done, Tenant, Priority, Cancelled, Lines.Count(l => l is not null && CompletionJson.IsErrorLine(l)),
                Checkpoints.Count(c => c is not null));

    }
}
