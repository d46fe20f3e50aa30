using ActorInfer.Actors.Scheduling;
using ActorInfer.Model.Generation;
using Akka.Actor;
using Akka.Event;
using Akka.Persistence;
using static ActorInfer.Actors.Jobs.JobProtocol;

namespace ActorInfer.Actors.Jobs;

internal sealed class JobActor : ReceivePersistentActor
{
    private readonly IActorRef _scheduler;
    private readonly string _resultsDir;
    private readonly int _snapshotEvery;
    private readonly Dictionary<string, Job> _jobs = [];
    private readonly List<string> _order = [];
    private readonly HashSet<IActorRef> _observers = [];
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private int _sinceSnapshot;

    public JobActor(string persistenceId, IActorRef scheduler, string resultsDir, int snapshotEvery)
    {
        PersistenceId = persistenceId;
        _scheduler = scheduler;
        _resultsDir = resultsDir;
        _snapshotEvery = snapshotEvery;

        Recover<JobEvents.Accepted>(Apply);
        Recover<JobEvents.ResultsRecorded>(Apply);
        Recover<JobEvents.Cancelled>(Apply);
        Recover<SnapshotOffer>(offer =>
        {
            if (offer.Snapshot is not JobEvents.Snapshot s) return;
            foreach (var j in s.Jobs)
            {
                _jobs[j.JobId] = new Job(j.JobId, j.Ids, j.Requests, j.Seeds, j.Lines, j.Tenant, j.Priority) { Cancelled = j.Cancelled };
                _order.Add(j.JobId);
            }
        });
        Recover<RecoveryCompleted>(_ => Resume());

        Command<SubmitJob>(Submit);
        Command<SchedulerProtocol.Finished>(Record);
        Command<GetJob>(m => Sender.Tell(_jobs.TryGetValue(m.JobId, out var job) ? job.Status() : new JobStatus(m.JobId, false, 0, 0)));
        Command<ListJobs>(m => Sender.Tell(new JobList(_order.Select(id => _jobs[id])
            .Where(j => m.Tenant is null || j.Tenant == m.Tenant).Select(j => j.Status()).ToList())));
        Command<CancelJob>(Cancel);
        Command<Observe>(m =>
        {
            if (_observers.Add(m.Observer)) Context.Watch(m.Observer);
        });
        Command<Terminated>(m => _observers.Remove(m.ActorRef));
        Command<SaveSnapshotSuccess>(m => DeleteMessages(m.Metadata.SequenceNr));
        Command<SaveSnapshotFailure>(m => _log.Warning("snapshot failed: {0}", m.Cause.Message));
        Command<DeleteMessagesSuccess>(_ => { });
        Command<DeleteMessagesFailure>(m => _log.Warning("deleting journaled events failed: {0}", m.Cause.Message));
    }

    public override string PersistenceId { get; }

    private void Submit(SubmitJob m)
    {
        if (_jobs.TryGetValue(m.JobId, out var known))
        {
            Sender.Tell(new JobAccepted(m.JobId, known.Lines.Length, AlreadyKnown: true));
            return;
        }
        var accepted = new JobEvents.Accepted(m.JobId, m.Entries.Select(e => e.Id).ToArray(),
            m.Entries.Select(e => e.RequestJson).ToArray(), m.Entries.Select(e => e.Seed).ToArray(), m.Entries.Select(e => e.ErrorLine).ToArray(),
            m.Tenant, m.Priority);
        var sender = Sender;
        Persist(accepted, e =>
        {
            Apply(e);
            sender.Tell(new JobAccepted(e.JobId, e.Requests.Length, AlreadyKnown: false));
            _log.Info("job {0} accepted: {1} lines", e.JobId, e.Requests.Length);
            var job = _jobs[e.JobId];
            Run(job);
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
        Persist(new JobEvents.Cancelled(m.JobId), e =>
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
        Persist(new JobEvents.ResultsRecorded(fresh.Select(r => r.Key).ToArray(), fresh.Select(r => r.ResultLine).ToArray()), e =>
        {
            Apply(e);
            foreach (var job in e.Keys.Select(k => Locate(k)!.Value.Job).Distinct())
                _log.Info("job {0}: {1}/{2} done", job.Id, job.Done, job.Lines.Length);
            foreach (var job in e.Keys.Select(k => Locate(k)!.Value.Job).Distinct().ToArray())
                CompleteIfDone(job);
            if (++_sinceSnapshot >= _snapshotEvery)
            {
                _sinceSnapshot = 0;
                SaveSnapshot(new JobEvents.Snapshot(_order.Select(id => _jobs[id].ToSnapshot()).ToArray()));
            }
        });
    }

    private void Apply(JobEvents.Accepted e)
    {
        var lines = new string?[e.Requests.Length];
        for (var i = 0; i < lines.Length; i++) lines[i] = e.Errors[i];
        _jobs[e.JobId] = new Job(e.JobId, e.Ids, e.Requests, e.Seeds, lines, e.Tenant, e.Priority);
        _order.Add(e.JobId);
    }

    private void Apply(JobEvents.Cancelled e)
    {
        if (!_jobs.TryGetValue(e.JobId, out var job)) return;
        job.Cancelled = true;
        for (var i = 0; i < job.Lines.Length; i++)
            job.Lines[i] ??= CancelledLine(job.Ids[i], i + 1);
    }

    private void Apply(JobEvents.ResultsRecorded e)
    {
        for (var i = 0; i < e.Keys.Length; i++)
            if (Locate(e.Keys[i]) is { } at && at.Job.Lines[at.Index] is null)
                at.Job.Lines[at.Index] = e.Lines[i];
    }

    /// <summary>After recovery: every unfinished request runs again, and every complete job has its results file.</summary>
    private void Resume()
    {
        var pending = 0;
        foreach (var id in _order)
        {
            var job = _jobs[id];
            pending += Run(job);
            if (job.IsComplete && !File.Exists(ResultsPath(id))) CompleteIfDone(job);
        }
        _log.Info("recovered {0} jobs, {1} requests to run", _order.Count, pending);
    }

    private int Run(Job job)
    {
        var items = new List<SchedulerProtocol.WorkItem>();
        for (var i = 0; i < job.Lines.Length; i++)
        {
            if (job.Lines[i] is not null || job.Requests[i] is not { } json) continue;
            items.Add(new SchedulerProtocol.WorkItem(Key(job.Id, i), job.Ids[i], CompletionRequestParser.Parse(json), job.Seeds[i], job.Priority));
        }
        if (items.Count > 0) _scheduler.Tell(new SchedulerProtocol.Enqueue(items));
        return items.Count;
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
        public string[] Ids { get; } = ids;
        public string?[] Requests { get; } = requests;
        public long[] Seeds { get; } = seeds;
        /// <summary>The result (or error) line of each input line; null while it runs.</summary>
        public string?[] Lines { get; } = lines;
        public int Done => Lines.Count(l => l is not null);
        public bool IsComplete => Lines.All(l => l is not null);
        public JobEvents.JobSnapshot ToSnapshot() => new(Id, Ids, Requests, Seeds, (string?[])Lines.Clone(), Tenant, Priority, Cancelled);

        public JobStatus Status() =>
            new(Id, true, Lines.Length, Done, Tenant, Priority, Cancelled, Lines.Count(l => l is not null && IsErrorLine(l)));

        /// <summary>
        /// Error lines (CompletionJson.ErrorLine) have a top-level "error" object; inside JSON strings quotes are
        /// escaped, so the unescaped sequence can only be that key.
        /// </summary>
        private static bool IsErrorLine(string line) => line.Contains(",\"error\":{", StringComparison.Ordinal);
    }
}
