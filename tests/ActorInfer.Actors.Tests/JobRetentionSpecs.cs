using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Jobs;
using ActorInfer.Actors.Node;
using ActorInfer.Actors.Scheduling;
using Akka.Actor;
using Akka.Configuration;
using Akka.TestKit.Xunit2;
using Microsoft.Data.Sqlite;
using static ActorInfer.Actors.Jobs.JobProtocol;

namespace ActorInfer.Actors.Tests;

/// <summary>
/// Retention of the job store on a real SQLite journal, with a clock the test moves: a finished job is kept for the
/// retention and forgotten after it (status, results file, snapshots), by this incarnation and the next alike; a job
/// still running is never forgotten; an expired job's id is new work again.
/// </summary>
public sealed class JobRetentionSpecs : TestKit
{
    private static readonly TimeSpan KeepFor = TimeSpan.FromHours(1);
    private static readonly string DataDir = TestModels.TempDir();
    private static readonly ActorInferSettings NodeSettings = SettingsLoader.Load(
        [ConfigurationFactory.ParseString($"actorinfer.data-dir = \"{DataDir}\"")], NodeModel.Problem, TestModels.RepositoryRoot);

    private readonly TestClock _clock = new(new DateTimeOffset(2026, 12, 1, 12, 0, 0, TimeSpan.Zero));

    public JobRetentionSpecs() : base(Prepare(), "retention")
    {
    }

    private static Config Prepare()
    {
        PersistenceConfig.PrepareSqlite(NodeSettings);
        return ActorInferNode.SystemConfig(NodeSettings, ConfigurationFactory.ParseString("akka.loglevel = WARNING\nakka.test.single-expect-default = 30s"));
    }

    private sealed class TestClock(DateTimeOffset start) : TimeProvider
    {
        private DateTimeOffset _now = start;

        public void Advance(TimeSpan by) => _now += by;

        public override DateTimeOffset GetUtcNow() => _now;
    }

    private static JobEntry Entry(int i) => new($"r{i}", $$"""{"prompt": [2, {{10 + i}}], "max_tokens": 2}""", i, null);

    private IActorRef Start(string persistenceId, IActorRef scheduler, string results) =>
        Sys.ActorOf(JobProtocol.Props(persistenceId, scheduler, results, snapshotEvery: 1, new Retention(KeepFor, _clock)));

    private void Restart(ref IActorRef jobs, string persistenceId, IActorRef scheduler, string results)
    {
        Watch(jobs);
        Sys.Stop(jobs);
        ExpectTerminated(jobs);
        jobs = Start(persistenceId, scheduler, results);
    }

    private JobStatus Status(IActorRef jobs, string id)
    {
        jobs.Tell(new GetJob(id));
        return ExpectMsg<JobStatus>();
    }

    [Fact]
    public void A_finished_job_is_kept_for_the_retention_then_forgotten_by_this_incarnation_and_the_next()
    {
        var results = Path.Combine(DataDir, "results-expire");
        var scheduler = CreateTestProbe();
        var jobs = Start("retention-expire", scheduler.Ref, results);
        jobs.Tell(new Observe(TestActor));
        jobs.Tell(new SubmitJob("done", [Entry(0), Entry(1)], Tenant: "alice"));
        ExpectMsg<JobAccepted>();
        scheduler.ExpectMsg<SchedulerProtocol.Enqueue>();
        jobs.Tell(new SubmitJob("running", [Entry(2)], Tenant: "alice"));
        ExpectMsg<JobAccepted>();
        scheduler.ExpectMsg<SchedulerProtocol.Enqueue>();
        jobs.Tell(new SchedulerProtocol.Finished(1, [new("done#0", "L0"), new("done#1", "L1")]), scheduler.Ref);
        var completed = ExpectMsg<JobCompleted>();
        Assert.True(File.Exists(completed.ResultsPath));

        // Half the retention later, across a restart: the finishing time is the persisted one, not the recovery's.
        _clock.Advance(KeepFor / 2);
        Restart(ref jobs, "retention-expire", scheduler.Ref, results);
        scheduler.ExpectMsg<SchedulerProtocol.Enqueue>();
        jobs.Tell(ExpireFinished.Instance);
        Assert.Equal("completed", Status(jobs, "done").State);

        // Just past the retention: forgotten, its results file deleted; the job still running is kept, however old.
        _clock.Advance(KeepFor / 2 + TimeSpan.FromSeconds(1));
        jobs.Tell(ExpireFinished.Instance);
        Assert.False(Status(jobs, "done").Known);
        Assert.False(File.Exists(completed.ResultsPath));
        Assert.Equal("queued", Status(jobs, "running").State);
        jobs.Tell(new ListJobs("alice"));
        Assert.Equal(["running"], ExpectMsg<JobList>().Jobs.Select(j => j.JobId));
        // The expiry's snapshot (saved after the expiry's event) replaces the older ones, which held the job.
        AwaitAssert(() =>
        {
            Assert.DoesNotContain("\"done\"", LatestSnapshot("retention-expire"));
            Assert.Equal(1, SnapshotRows("retention-expire"));
        }, TimeSpan.FromSeconds(30));

        // The next incarnation agrees (the expiry is persisted).
        Restart(ref jobs, "retention-expire", scheduler.Ref, results);
        Assert.Equal(["running#0"], scheduler.ExpectMsg<SchedulerProtocol.Enqueue>().Items.Select(i => i.Key));
        Assert.False(Status(jobs, "done").Known);

        // Its id is new work again (an idempotency key forgotten with its job): accepted and run, not acknowledged as known.
        jobs.Tell(new SubmitJob("done", [Entry(5)], Tenant: "alice"));
        ExpectMsg<JobAccepted>().Should(new JobAccepted("done", 1, AlreadyKnown: false));
        Assert.Equal(["done#0"], scheduler.ExpectMsg<SchedulerProtocol.Enqueue>().Items.Select(i => i.Key));
    }

    [Fact]
    public void A_cancelled_job_and_a_job_of_invalid_lines_only_expire_from_their_finishing_time()
    {
        var results = Path.Combine(DataDir, "results-cancelled");
        var scheduler = CreateTestProbe();
        var jobs = Start("retention-cancelled", scheduler.Ref, results);
        jobs.Tell(new SubmitJob("invalid", [new JobEntry("line-1", null, 1, "{\"error\":\"bad\"}")]));
        ExpectMsg<JobAccepted>();
        jobs.Tell(new SubmitJob("cancelled", [Entry(0)]));
        ExpectMsg<JobAccepted>();
        scheduler.ExpectMsg<SchedulerProtocol.Enqueue>();

        // The invalid job finished when it was accepted; the other one only when it is cancelled, later.
        _clock.Advance(KeepFor - TimeSpan.FromMinutes(1));
        jobs.Tell(new CancelJob("cancelled"));
        Assert.Equal("cancelled", ExpectMsg<JobStatus>().State);
        _clock.Advance(TimeSpan.FromMinutes(2));
        jobs.Tell(ExpireFinished.Instance);
        Assert.False(Status(jobs, "invalid").Known);
        Assert.Equal("cancelled", Status(jobs, "cancelled").State);
        _clock.Advance(KeepFor);
        jobs.Tell(ExpireFinished.Instance);
        Assert.False(Status(jobs, "cancelled").Known);
        Assert.Empty(Directory.GetFiles(results));
    }

    private static SqliteConnection Snapshots()
    {
        var connection = new SqliteConnection($"Data Source={NodeSettings.SqliteSnapshotPath}");
        connection.Open();
        return connection;
    }

    private static long SnapshotRows(string persistenceId)
    {
        using var connection = Snapshots();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT count(*) FROM snapshot WHERE persistence_id = $id";
        command.Parameters.AddWithValue("$id", persistenceId);
        return (long)command.ExecuteScalar()!;
    }

    private static string LatestSnapshot(string persistenceId)
    {
        using var connection = Snapshots();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT snapshot FROM snapshot WHERE persistence_id = $id ORDER BY sequence_number DESC LIMIT 1";
        command.Parameters.AddWithValue("$id", persistenceId);
        return System.Text.Encoding.UTF8.GetString((byte[])command.ExecuteScalar()!);
    }
}
