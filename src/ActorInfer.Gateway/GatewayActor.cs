using System.Text.Json;
using ActorInfer.Actors.Jobs;
using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using Akka.Actor;
using Akka.Event;
using static ActorInfer.Gateway.GatewayProtocol;

namespace ActorInfer.Gateway;

internal sealed class GatewayActor : ReceiveActor
{
    /// <param name="Held">Whether this admission put the job's requests on its tenant's queue (a retry of a job
    /// still running does not: they are there already).</param>
    private sealed record Persisted(Admit Admit, IActorRef ReplyTo, JobProtocol.JobAccepted Accepted, bool Held);

    private sealed record NotPersisted(Admit Admit, IActorRef ReplyTo, Exception Cause, bool Held);

    private readonly IActorRef _jobs;
    private readonly IActorRef _memory;
    private readonly IActorRef _planner;
    private readonly GatewayMetrics _metrics;
    private readonly TimeSpan _persistTimeout;
    private readonly Dictionary<string, (string Tenant, int Requests)> _pending = [];
    private readonly Dictionary<string, int> _queued = [];
    /// <summary>Requests waiting for a job's first result line: several when a client retried with its idempotency key.</summary>
    private readonly Dictionary<string, List<TaskCompletionSource<string>>> _waiters = [];
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private bool _seenPolicy;

    private readonly IActorRef _scheduler;

    public GatewayActor(IActorRef jobs, IActorRef memory, IActorRef planner, IActorRef scheduler, GatewayMetrics metrics, TimeSpan persistTimeout)
    {
        _scheduler = scheduler;
        _jobs = jobs;
        _memory = memory;
        _planner = planner;
        _metrics = metrics;
        _persistTimeout = persistTimeout;

        Receive<Admit>(OnAdmit);
        Receive<Persisted>(m =>
        {
            // A retry of a known job (same idempotency key) runs nothing: its requests are counted once.
            if (m.Accepted.AlreadyKnown && m.Held) Release(m.Admit.JobId);
            if (!m.Accepted.AlreadyKnown) _metrics.RequestsAdmitted.WithLabels(m.Admit.Tenant, m.Admit.Kind).Inc(Runnable(m.Admit));
            m.ReplyTo.Tell(new Admitted(m.Accepted.JobId, m.Accepted.Requests, m.Accepted.AlreadyKnown));
        });
        Receive<NotPersisted>(m =>
        {
            _log.Warning("job {0} of tenant {1} was not persisted: {2}", m.Admit.JobId, m.Admit.Tenant, m.Cause.Message);
            if (m.Held) Release(m.Admit.JobId);
            if (m.Admit.Result is not null) Forget(m.Admit.JobId, m.Admit.Result);
            m.ReplyTo.Tell(new Status.Failure(m.Cause));
        });
        Receive<Forget>(m => Forget(m.JobId, m.Result));
        Receive<GetQueues>(_ => Sender.Tell(new Queues(new Dictionary<string, int>(_queued))));
        Receive<JobProtocol.JobCompleted>(OnCompleted);
        Receive<JobProtocol.JobList>(m =>
        {
            // Work accepted before a restart still counts against its tenant's limit.
            foreach (var job in m.Jobs.Where(j => j.Tenant is not null && !j.IsComplete && !_pending.ContainsKey(j.JobId)))
                Hold(job.JobId, job.Tenant!, job.Total - job.Done);
        });
        Receive<MemoryProtocol.Subscribed>(m => _metrics.SetBudgets(m.Budgets));
        Receive<MemoryProtocol.BudgetChanged>(m => _metrics.SetBudgets(m.Budgets));
        Receive<SchedulerProtocol.BatchesDropped>(m =>
        {
            _metrics.Drops.Inc(m.Batches);
            _metrics.Requeues.Inc(m.Sequences);
            _metrics.RecomputedTokens.Inc(m.TokensToRecompute);
        });
        Receive<SchedulerProtocol.DeviceOutOfMemory>(_ => _metrics.OutOfMemory.Inc());
        Receive<SchedulerProtocol.PolicyHonoured>(m => _metrics.PressureHonour.Observe(m.Elapsed.TotalSeconds));
        Receive<SchedulerProtocol.BlockStarted>(m => _metrics.BlockStarted(m));
        Receive<SchedulerProtocol.BlockFinished>(m => _metrics.BlockFinished(m));
        Receive<PlannerProtocol.PolicyChanged>(_ =>
        {
            if (_seenPolicy) _metrics.PolicyChanges.Inc();
            _seenPolicy = true;
        });
    }

    protected override void PreStart()
    {
        _jobs.Tell(new JobProtocol.Observe(Self));
        _jobs.Tell(new JobProtocol.ListJobs(null));
        _memory.Tell(new MemoryProtocol.Subscribe(Self));
        _planner.Tell(new PlannerProtocol.Subscribe(Self));
        _scheduler.Tell(new SchedulerProtocol.Observe(Self));
    }

    protected override void PostStop()
    {
        foreach (var waiter in _waiters.Values.SelectMany(w => w)) waiter.TrySetCanceled();
    }

    private static int Runnable(Admit m) => m.Entries.Count(e => e.RequestJson is not null);

    private void OnAdmit(Admit m)
    {
        // Invalid lines count too: each is a line of results the node keeps, and they must not be free to send.
        var requests = m.Entries.Count;
        var queued = _queued.GetValueOrDefault(m.Tenant);
        if (requests > m.MaxQueued)
        {
            Sender.Tell(new Refused($"{requests} requests are more than tenant '{m.Tenant}' may queue ({m.MaxQueued}): split the job", Never: true));
            return;
        }
        if (requests > 0 && queued + requests > m.MaxQueued)
        {
            _metrics.RequestsRejected.WithLabels(m.Tenant).Inc();
            Sender.Tell(new Refused($"tenant '{m.Tenant}' has {queued} requests queued; its limit is {m.MaxQueued} (this adds {requests})"));
            return;
        }
        var held = !_pending.ContainsKey(m.JobId);
        if (held) Hold(m.JobId, m.Tenant, requests);
        if (m.Result is not null)
        {
            if (!_waiters.TryGetValue(m.JobId, out var waiters)) _waiters[m.JobId] = waiters = [];
            waiters.Add(m.Result);
        }
        var replyTo = Sender;
        _jobs.Ask<JobProtocol.JobAccepted>(new JobProtocol.SubmitJob(m.JobId, m.Entries, m.Tenant, m.Priority), _persistTimeout)
            .PipeTo(Self, success: a => new Persisted(m, replyTo, a, held), failure: ex => new NotPersisted(m, replyTo, ex, held));
    }

    private void Forget(string jobId, TaskCompletionSource<string> result)
    {
        if (!_waiters.TryGetValue(jobId, out var waiters)) return;
        waiters.Remove(result);
        if (waiters.Count == 0) _waiters.Remove(jobId);
    }

    private void Hold(string jobId, string tenant, int requests)
    {
        _pending[jobId] = (tenant, requests);
        _queued[tenant] = _queued.GetValueOrDefault(tenant) + requests;
        _metrics.TenantQueued.WithLabels(tenant).Set(_queued[tenant]);
    }

    private void Release(string jobId)
    {
        if (!_pending.Remove(jobId, out var held)) return;
        _queued[held.Tenant] = Math.Max(0, _queued.GetValueOrDefault(held.Tenant) - held.Requests);
        _metrics.TenantQueued.WithLabels(held.Tenant).Set(_queued[held.Tenant]);
    }

    private void OnCompleted(JobProtocol.JobCompleted m)
    {
        Release(m.JobId);
        // Read line by line: a job's results file may be large, and only its first line is kept (a completion's result).
        string? first = null;
        var tokens = 0L;
        try
        {
            foreach (var line in File.ReadLines(m.ResultsPath))
            {
                first ??= line;
                tokens += CompletionTokens(line);
            }
        }
        catch (IOException ex)
        {
            _log.Error("results of job {0} unreadable: {1}", m.JobId, ex.Message);
            if (_waiters.Remove(m.JobId, out var failed)) failed.ForEach(w => w.TrySetException(ex));
            return;
        }
        _metrics.TokensGenerated.Inc(tokens);
        if (_waiters.Remove(m.JobId, out var waiters))
            foreach (var waiter in waiters)
            {
                if (first is not null) waiter.TrySetResult(first);
                else waiter.TrySetException(new InvalidOperationException($"job {m.JobId} has no result line"));
            }
    }

    private static int CompletionTokens(string line)
    {
        using var doc = JsonDocument.Parse(line);
        return doc.RootElement.TryGetProperty("usage", out var usage) && usage.TryGetProperty("completion_tokens", out var t) ? t.GetInt32() : 0;
    }
}
