using System.Text.Json;
using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Jobs;
using ActorInfer.Actors.Layers;
using ActorInfer.Actors.Node;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Weights;
using ActorInfer.TestSupport;
using Akka.Actor;
using Akka.Configuration;
using Akka.Persistence;
using Akka.TestKit.Xunit2;
using static ActorInfer.Actors.Jobs.JobProtocol;
using static TorchSharp.torch;
using LayerIndex = ActorInfer.Runtime.Schedule.LayerIndex;

namespace ActorInfer.Actors.Tests;

/// <summary>
/// The job actor on a real journal (SQLite and PostgreSQL) persists where each sequence dropped from a running block
/// stopped; after a restart the request resumes from there (not from its prompt) and ends with the result it would
/// have had without the drop. A result supersedes the checkpoint.
/// </summary>
public abstract class CheckpointPersistenceSpecs : TestKit
{
    private static readonly string ModelDir = Fixtures.HfOpt("opt-tiny");
    private static readonly OptConfig ModelConfig = OptConfigs.Resolve(ModelDir);
    private readonly CompletionFactory _factory = new(ModelConfig, ModelFiles.OpenCodec(ModelDir));
    private readonly TestJournal _journal;
    private string DataDir => _journal.DataDir;

    private CheckpointPersistenceSpecs(TestJournal journal) : base(journal.SystemConfig(), "checkpoints")
    {
        _journal = journal;
    }

    public sealed class Sqlite() : CheckpointPersistenceSpecs(TestJournal.Sqlite());

    public sealed class PostgreSql() : CheckpointPersistenceSpecs(TestJournal.PostgreSql());

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing) _journal.Dispose();
    }

    /// <summary>A second actor system on the same journal (a restarted node).</summary>
    private Config Prepare() => _journal.SystemConfig();

    /// <summary>Greedy and sampled, text and token-id prompts, with and without (prompt) log-probabilities.</summary>
    private static readonly string[] JobLines =
    [
        """{"prompt": "The first request", "max_tokens": 10, "temperature": 0, "ignore_eos": true}""",
        """{"prompt": [2, 40, 41, 42, 43], "max_tokens": 9, "temperature": 0.9, "seed": 17, "ignore_eos": true}""",
        """{"prompt": "A sampled request without a seed", "max_tokens": 10, "temperature": 0.8, "logprobs": 1, "echo": true, "ignore_eos": true}""",
        """{"prompt": [2, 300, 301], "max_tokens": 11, "temperature": 0, "logprobs": 1, "ignore_eos": true}""",
    ];

    private List<JobEntry> Entries() => JobProtocol.Entries(JobLines, _factory, requestSeed: 1000);

    private IInferenceEngine Engine()
    {
        using var source = ModelFiles.OpenCheckpoint(ModelDir, ModelConfig);
        return new ResidentEngine(ResidentModel.Load(source, ModelConfig, ScalarType.Float32, CPU), _factory.Decode);
    }

    /// <summary>Each request generated alone, all on the device, never dropped: the result lines a resumed run must give.</summary>
    private (string[] Lines, SequenceState[] States) Reference()
    {
        using var source = ModelFiles.OpenCheckpoint(ModelDir, ModelConfig);
        using var model = ResidentModel.Load(source, ModelConfig, ScalarType.Float32, CPU);
        var entries = Entries();
        var states = entries.Select(e => _factory.Create(CompletionRequestParser.Parse(e.RequestJson!), e.Seed)).ToArray();
        foreach (var state in states) BatchGenerator.Run(model, [state], _factory.Decode);
        return (states.Select((s, i) => CompletionJson.ToJsonLine(_factory.Result(s, entries[i].Id))).ToArray(), states);
    }

    private static IActorRef[] Layers(ActorSystem system, IInferenceEngine engine) =>
        Enumerable.Range(0, ModelConfig.NumHiddenLayers).Select(i => system.ActorOf(LayerProtocol.Props(new LayerIndex(i), engine))).ToArray();

    [Theory]
    [InlineData(1)] // recovered from a snapshot (the journal is deleted after each)
    [InlineData(1000)] // recovered from the journal
    public void A_dropped_sequence_resumes_after_a_restart_from_its_persisted_checkpoint_with_the_result_it_would_have_had(int snapshotEvery)
    {
        var persistenceId = $"checkpoint-restart-{snapshotEvery}";
        var results = Path.Combine(DataDir, persistenceId);
        var (expected, reference) = Reference();

        // The first incarnation: a block of 2 GPU batches of 2 whose second batch is dropped after 3 tokens. The
        // gate stands in for layer 0's mailbox, so the block moves only as far as the test lets it.
        var first = ActorSystem.Create("first", Prepare());
        var engine = Engine();
        try
        {
            var layers = Layers(first, engine);
            var gate = CreateTestProbe(first);
            var observer = CreateTestProbe(first);
            var scheduler = first.ActorOf(SchedulerProtocol.Props(engine, _factory, [gate.Ref, .. layers[1..]], planner: null));
            scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(2, 2, "two batches"), Memory.TierBudgets.None));
            scheduler.Tell(new SchedulerProtocol.Observe(observer.Ref));
            var jobs = first.ActorOf(JobProtocol.Props(persistenceId, scheduler, results, snapshotEvery));
            var client = CreateTestProbe(first);
            jobs.Tell(new SubmitJob("job-k", Entries()), client.Ref);
            client.ExpectMsg<JobAccepted>();
            observer.ExpectMsg<SchedulerProtocol.BlockStarted>(m => m.Sequences == 4 && m.GpuBatches == 2);

            // One layer computation is in flight at a time: the smaller policy arrives during step 3 and the block
            // sheds its second batch at the next layer boundary, within step 3 (after 3 tokens); step 4 never runs here.
            LayerProtocol.Compute held;
            while ((held = gate.ExpectMsg<LayerProtocol.Compute>()).Step.Value < 4)
            {
                if (held.Step.Value == 3 && held.Batch.Value == 0)
                    scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(2, 1, "one batch"), Memory.TierBudgets.None));
                layers[0].Tell(held, scheduler);
            }
            held.Hidden.Dispose();
            var dropped = observer.FishForMessage<SchedulerProtocol.BatchesDropped>(_ => true);
            Assert.Equal((1, 2), (dropped.Batches, dropped.Sequences));
            // The job actor answers once the checkpoint it was sent before this question is persisted.
            jobs.Tell(new GetJob("job-k"), client.Ref);
            var status = client.ExpectMsg<JobStatus>();
            Assert.Equal((0, 2), (status.Done, status.Checkpointed));
        }
        finally
        {
            Shutdown(first, TimeSpan.FromSeconds(10), verifySystemShutdown: true);
            engine.Dispose();
        }

        // A new actor system on the same files: the dropped requests are enqueued with their checkpoints, the others
        // from their prompts, and the job completes with the results of a run without drops.
        var second = ActorSystem.Create("second", Prepare());
        engine = Engine();
        try
        {
            var real = second.ActorOf(SchedulerProtocol.Props(engine, _factory, Layers(second, engine), planner: null));
            real.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(4, 1, "one batch of 4"), Memory.TierBudgets.None));
            var scheduler = CreateTestProbe(second);
            scheduler.SetAutoPilot(new Akka.TestKit.DelegateAutoPilot((sender, message) =>
            {
                real.Tell(message, sender);
                return Akka.TestKit.AutoPilot.KeepRunning;
            }));
            var jobs = second.ActorOf(JobProtocol.Props(persistenceId, scheduler.Ref, results, snapshotEvery));
            var observer = CreateTestProbe(second);
            jobs.Tell(new Observe(observer.Ref));

            var enqueued = scheduler.ExpectMsg<SchedulerProtocol.Enqueue>();
            Assert.Equal(["job-k#0", "job-k#1", "job-k#2", "job-k#3"], enqueued.Items.Select(i => i.Key));
            Assert.Null(enqueued.Items[0].Resume);
            Assert.Null(enqueued.Items[1].Resume);
            var resumes = new[] { 2, 3 }.ToDictionary(i => i, i => enqueued.Items[i].Resume ?? throw new Xunit.Sdk.XunitException($"request {i} has no checkpoint"));
            foreach (var (index, resume) in resumes)
            {
                Assert.Equal(reference[index].OutputIds.Take(3), resume.OutputIds);
                AssertClose(reference[index].OutputLogprobs.Take(3), resume.OutputLogprobs);
            }
            AssertClose(reference[2].PromptLogprobs!.Skip(1).Select(v => v!.Value), resumes[2].PromptLogprobs!.Skip(1).Select(v => v!.Value));

            var completed = observer.ExpectMsg<JobCompleted>(TimeSpan.FromSeconds(30));
            var actual = File.ReadAllLines(completed.ResultsPath);
            Assert.Equal(expected.Length, actual.Length);
            for (var i = 0; i < expected.Length; i++) AssertSameResult(expected[i], actual[i]);
            // The resumed requests kept what their checkpoints held, bit for bit: restored, not recomputed.
            foreach (var (index, resume) in resumes)
                Assert.Equal(resume.OutputLogprobs, Floats(actual[index], "output_logprobs").Take(3));
            Assert.Equal(resumes[2].PromptLogprobs!.Skip(1).Select(v => v!.Value), Floats(actual[2], "prompt_logprobs").Skip(1));
        }
        finally
        {
            Shutdown(second, TimeSpan.FromSeconds(10), verifySystemShutdown: true);
            engine.Dispose();
        }
    }

    /// <summary>
    /// Log-probabilities depend in their last bits on a batch's composition and padding (a request computed alone
    /// and in a batch of four differ by about 1e-7); everything else in a result line must be equal.
    /// </summary>
    private static void AssertSameResult(string expected, string actual)
    {
        using var e = JsonDocument.Parse(expected);
        using var a = JsonDocument.Parse(actual);
        var names = e.RootElement.EnumerateObject().Select(p => p.Name).ToArray();
        Assert.Equal(names, a.RootElement.EnumerateObject().Select(p => p.Name));
        foreach (var name in names)
        {
            if (name.EndsWith("logprobs", StringComparison.Ordinal))
                AssertClose(Floats(expected, name), Floats(actual, name));
            else
                Assert.Equal(e.RootElement.GetProperty(name).GetRawText(), a.RootElement.GetProperty(name).GetRawText());
        }
    }

    private static float[] Floats(string line, string name)
    {
        using var doc = JsonDocument.Parse(line);
        return doc.RootElement.GetProperty(name).EnumerateArray().Select(v => v.ValueKind == JsonValueKind.Null ? float.NaN : v.GetSingle()).ToArray();
    }

    private static void AssertClose(IEnumerable<float> expected, IEnumerable<float> actual)
    {
        var (e, a) = (expected.ToArray(), actual.ToArray());
        Assert.Equal(e.Length, a.Length);
        for (var i = 0; i < e.Length; i++)
            Assert.True(float.IsNaN(e[i]) && float.IsNaN(a[i]) || Math.Abs(e[i] - a[i]) <= 1e-5, $"at {i}: expected {e[i]}, got {a[i]}");
    }

    /// <summary>Waits until the latest snapshot of <paramref name="persistenceId"/> is the one taken after event <paramref name="sequenceNr"/>.</summary>
    private void AwaitSnapshot(string persistenceId, long sequenceNr)
    {
        var store = Persistence.Instance.Apply(Sys).SnapshotStoreFor(null);
        var probe = CreateTestProbe();
        AwaitAssert(() =>
        {
            store.Tell(new LoadSnapshot(persistenceId, SnapshotSelectionCriteria.Latest, long.MaxValue), probe.Ref);
            Assert.Equal(sequenceNr, probe.ExpectMsg<LoadSnapshotResult>().Snapshot?.Metadata.SequenceNr);
        }, TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(50));
    }

    private static SchedulerProtocol.Checkpoint Checkpoint(int tokens) => new(
        Enumerable.Range(0, tokens).Select(t => 100 + t).ToArray(),
        // Values whose JSON form is long or unusual: they must come back bit for bit.
        Enumerable.Range(0, tokens).Select(t => -MathF.Pow(1.7f, t) / 3f - float.Epsilon * t).ToArray(),
        [null, -0.1f, -1e-7f, float.NegativeInfinity]);

    [Theory]
    [InlineData(1)]
    [InlineData(1000)]
    public void The_latest_checkpoint_is_kept_and_a_result_supersedes_it(int snapshotEvery)
    {
        var persistenceId = $"checkpoint-superseded-{snapshotEvery}";
        var results = Path.Combine(DataDir, persistenceId);
        var scheduler = CreateTestProbe();
        var jobs = Sys.ActorOf(JobProtocol.Props(persistenceId, scheduler.Ref, results, snapshotEvery));
        jobs.Tell(new Observe(TestActor));
        jobs.Tell(new SubmitJob("job-s", Entries().Take(3).ToArray()));
        ExpectMsg<JobAccepted>();
        scheduler.ExpectMsg<SchedulerProtocol.Enqueue>();

        jobs.Tell(new SchedulerProtocol.Checkpointed(1, [new("job-s#0", Checkpoint(2)), new("job-s#1", Checkpoint(1))]), scheduler.Ref);
        // A later drop of the same request replaces its checkpoint.
        jobs.Tell(new SchedulerProtocol.Checkpointed(2, [new("job-s#1", Checkpoint(5))]), scheduler.Ref);
        // Request 0 finishes: its result supersedes its checkpoint, and a checkpoint that arrives late changes nothing.
        jobs.Tell(new SchedulerProtocol.Finished(3, [new("job-s#0", "L0")]), scheduler.Ref);
        jobs.Tell(new SchedulerProtocol.Checkpointed(4, [new("job-s#0", Checkpoint(3))]), scheduler.Ref);

        // A new incarnation of the actor system: request 0 is not run again, request 1 resumes from its latest
        // checkpoint (exactly as sent), request 2 (never dropped) from its prompt. The first incarnation still runs, and
        // deletes the journal up to each snapshot once it is saved: a recovery that read the snapshot before the last
        // one would then replay nothing after it. A restarted node never overlaps its predecessor, so the test waits.
        if (snapshotEvery == 1) AwaitSnapshot(persistenceId, sequenceNr: 4);
        var second = ActorSystem.Create("second", Prepare());
        try
        {
            jobs.Tell(new GetJob("job-s"));
            ExpectMsg<JobStatus>().Should(new JobStatus("job-s", true, 3, 1, Checkpointed: 1));
            var probe = CreateTestProbe(second);
            second.ActorOf(JobProtocol.Props(persistenceId, probe.Ref, results, snapshotEvery));
            var enqueued = probe.ExpectMsg<SchedulerProtocol.Enqueue>();
            Assert.Equal(["job-s#1", "job-s#2"], enqueued.Items.Select(i => i.Key));
            var resumed = enqueued.Items[0].Resume!;
            var sent = Checkpoint(5);
            Assert.Equal(sent.OutputIds, resumed.OutputIds);
            Assert.Equal(sent.OutputLogprobs.Select(BitConverter.SingleToInt32Bits), resumed.OutputLogprobs.Select(BitConverter.SingleToInt32Bits));
            Assert.Equal(sent.PromptLogprobs, resumed.PromptLogprobs);
            Assert.Null(enqueued.Items[1].Resume);
        }
        finally
        {
            Shutdown(second, TimeSpan.FromSeconds(10), verifySystemShutdown: true);
        }

        // Once every result is in, nothing is left to resume.
        jobs.Tell(new SchedulerProtocol.Finished(5, [new("job-s#1", "L1"), new("job-s#2", "L2")]), scheduler.Ref);
        Assert.Equal(["L0", "L1", "L2"], File.ReadAllLines(ExpectMsg<JobCompleted>().ResultsPath));
        Assert.True(_journal.PostgresRows() is null or > 0, "the PostgreSQL journal holds nothing");
        Watch(jobs);
        Sys.Stop(jobs);
        ExpectTerminated(jobs);
        Sys.ActorOf(JobProtocol.Props(persistenceId, scheduler.Ref, results, snapshotEvery));
        scheduler.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
    }
}
