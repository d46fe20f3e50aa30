using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Jobs;
using ActorInfer.Actors.Node;
using ActorInfer.Actors.Scheduling;
using Akka.Actor;
using Akka.Configuration;
using Akka.TestKit.Xunit2;
using static ActorInfer.Actors.Jobs.JobProtocol;

namespace ActorInfer.Actors.Tests;

/// <summary>
/// The job actor on a real journal, SQLite and PostgreSQL: persisted before acknowledged, recovered, answered once.
/// </summary>
public abstract class JobPersistenceSpecs : TestKit
{
    private readonly TestJournal _journal;
    private string DataDir => _journal.DataDir;

    private JobPersistenceSpecs(TestJournal journal) : base(journal.SystemConfig(), "jobs")
    {
        _journal = journal;
    }

    public sealed class Sqlite() : JobPersistenceSpecs(TestJournal.Sqlite());

    public sealed class PostgreSql() : JobPersistenceSpecs(TestJournal.PostgreSql());

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing) _journal.Dispose();
    }

    private static JobEntry Entry(int i) => new($"r{i}", $$"""{"prompt": [2, {{10 + i}}], "max_tokens": 2}""", i, null);

    [Fact]
    public void A_job_is_persisted_recovered_and_answered_exactly_once()
    {
        var results = Path.Combine(DataDir, "results");
        var scheduler = CreateTestProbe();
        var jobs = Sys.ActorOf(JobProtocol.Props("jobs-spec", scheduler.Ref, results, snapshotEvery: 2));
        var entries = Enumerable.Range(0, 5).Select(Entry).Append(new JobEntry("line-6", null, 6, "{\"error\":\"bad\"}")).ToArray();
        jobs.Tell(new SubmitJob("job-a", entries));
        ExpectMsg<JobAccepted>().Should(new JobAccepted("job-a", 6, false));
        var enqueued = scheduler.ExpectMsg<SchedulerProtocol.Enqueue>();
        Assert.Equal(["job-a#0", "job-a#1", "job-a#2", "job-a#3", "job-a#4"], enqueued.Items.Select(i => i.Key));
        Assert.Equal("r3", enqueued.Items[3].Id);

        // Submitting the same job again (a node that died before moving the inbox file) adds nothing.
        jobs.Tell(new SubmitJob("job-a", entries));
        ExpectMsg<JobAccepted>().Should(new JobAccepted("job-a", 6, true));
        scheduler.ExpectNoMsg(TimeSpan.FromMilliseconds(100));

        jobs.Tell(new SchedulerProtocol.Finished(1, [new("job-a#0", "L0"), new("job-a#1", "L1")]), scheduler.Ref);
        jobs.Tell(new SchedulerProtocol.Finished(2, [new("job-a#2", "L2")]), scheduler.Ref);
        // A block finished twice (replayed after a crash) is recorded once.
        jobs.Tell(new SchedulerProtocol.Finished(2, [new("job-a#2", "L2-again")]), scheduler.Ref);
        jobs.Tell(new GetJob("job-a"));
        ExpectMsg<JobStatus>().Should(new JobStatus("job-a", true, 6, 4));

        // A new incarnation recovers from the journal (and the snapshot taken after 2 result events).
        Watch(jobs);
        Sys.Stop(jobs);
        ExpectTerminated(jobs);
        var restarted = Sys.ActorOf(JobProtocol.Props("jobs-spec", scheduler.Ref, results, snapshotEvery: 2));
        restarted.Tell(new Observe(TestActor));
        var again = scheduler.ExpectMsg<SchedulerProtocol.Enqueue>();
        Assert.Equal(["job-a#3", "job-a#4"], again.Items.Select(i => i.Key));
        Assert.False(File.Exists(Path.Combine(results, "job-a.jsonl")));

        restarted.Tell(new SchedulerProtocol.Finished(3, [new("job-a#3", "L3"), new("job-a#4", "L4")]), scheduler.Ref);
        var completed = ExpectMsg<JobCompleted>();
        Assert.Equal(6, completed.Lines);
        Assert.Equal(["L0", "L1", "L2", "L3", "L4", "{\"error\":\"bad\"}"], File.ReadAllLines(completed.ResultsPath));
        Assert.True(_journal.PostgresRows() is null or > 0, "the PostgreSQL journal holds nothing");
    }

    [Fact]
    public void A_cancellation_is_persisted_withdraws_queued_requests_and_survives_recovery()
    {
        var results = Path.Combine(DataDir, "results-cancel");
        var scheduler = CreateTestProbe();
        var jobs = Sys.ActorOf(JobProtocol.Props("jobs-cancel-spec", scheduler.Ref, results, snapshotEvery: 1));
        jobs.Tell(new Observe(TestActor));
        jobs.Tell(new SubmitJob("job-c", Enumerable.Range(0, 3).Select(Entry).ToArray(), Tenant: "alice", Priority: 4));
        ExpectMsg<JobAccepted>();
        Assert.All(scheduler.ExpectMsg<SchedulerProtocol.Enqueue>().Items, i => Assert.Equal(4, i.Priority));
        jobs.Tell(new SchedulerProtocol.Finished(1, [new("job-c#0", "L0")]), scheduler.Ref);

        jobs.Tell(new CancelJob("job-c"));
        var status = ExpectMsg<JobStatus>();
        Assert.Equal(("cancelled", 3, 2, "alice", 4), (status.State, status.Done, status.Failed, status.Tenant, status.Priority));
        Assert.Equal(["job-c#1", "job-c#2"], scheduler.ExpectMsg<SchedulerProtocol.Withdraw>().Keys);
        var completed = ExpectMsg<JobCompleted>();
        Assert.Equal("L0", File.ReadAllLines(completed.ResultsPath)[0]);
        // A result that arrives after the cancellation (its block was running) changes nothing.
        jobs.Tell(new SchedulerProtocol.Finished(2, [new("job-c#1", "L1")]), scheduler.Ref);

        Watch(jobs);
        Sys.Stop(jobs);
        ExpectTerminated(jobs);
        var restarted = Sys.ActorOf(JobProtocol.Props("jobs-cancel-spec", scheduler.Ref, results, snapshotEvery: 1));
        restarted.Tell(new ListJobs("alice"));
        var recovered = Assert.Single(ExpectMsg<JobList>().Jobs);
        Assert.Equal(("cancelled", "alice", 4, 2), (recovered.State, recovered.Tenant, recovered.Priority, recovered.Failed));
        restarted.Tell(new ListJobs("bob"));
        Assert.Empty(ExpectMsg<JobList>().Jobs);
        scheduler.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
    }
}
