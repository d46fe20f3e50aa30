using ActorInfer.Actors.Jobs;
using Akka.Actor;
using Akka.Configuration;
using Akka.Serialization;
using Akka.TestKit.Xunit2;

namespace ActorInfer.Actors.Tests;

/// <summary>
/// The job store's snapshot through the node's serialization: written by <see cref="JobSnapshotSerializer"/> as plain
/// UTF-8 JSON and read back whole (unfinished lines, checkpoints with -Infinity log-probabilities, finishing times); a
/// snapshot written by Akka's default JSON serializer, as nodes before it wrote them, still loads.
/// </summary>
public sealed class JobSnapshotSerializerSpecs() : TestKit(ConfigurationFactory.ParseString(JobSnapshotSerializer.Config), "job-snapshots")
{
    private static JobEvents.Snapshot Sample() => new([
        new JobEvents.JobSnapshot("job-a", ["a-0", "a-1"], ["{\"prompt\":\"x\"}", null], [7, -3], ["{\"id\":\"a-0\",\"text\":\"é \\\"q\\\"\"}", null],
            "tenant-1", 2, false,
            [null, new JobEvents.SequenceCheckpoint([5, 6], [-0.5f, float.NegativeInfinity], [null, -1.25f])], null),
        new JobEvents.JobSnapshot("cmpl-b", ["cmpl-b"], ["{\"prompt\":\"y\"}"], [long.MaxValue], ["{\"id\":\"cmpl-b\"}"],
            null, 0, true, null, 1796434786359),
    ]);

    [Fact]
    public void The_snapshot_is_written_as_plain_json_and_read_back_whole()
    {
        var snapshot = Sample();
        var serializer = Sys.Serialization.FindSerializerFor(snapshot);
        Assert.IsType<JobSnapshotSerializer>(serializer);

        var bytes = serializer.ToBinary(snapshot);
        var text = System.Text.Encoding.UTF8.GetString(bytes);
        Assert.DoesNotContain("$type", text);
        Assert.StartsWith("{\"Jobs\":[", text);

        var manifest = Serialization.ManifestFor(serializer, snapshot);
        AssertSame(snapshot, (JobEvents.Snapshot)Sys.Serialization.Deserialize(bytes, serializer.Identifier, manifest));
    }

    [Fact]
    public void A_snapshot_written_by_the_default_serializer_still_loads()
    {
        var snapshot = Sample();
        var old = new NewtonSoftJsonSerializer((ExtendedActorSystem)Sys);
        var bytes = old.ToBinary(snapshot);

        AssertSame(snapshot, (JobEvents.Snapshot)Sys.Serialization.Deserialize(bytes, old.Identifier, typeof(JobEvents.Snapshot)));
    }

    private static void AssertSame(JobEvents.Snapshot expected, JobEvents.Snapshot actual)
    {
        Assert.Equal(expected.Jobs.Length, actual.Jobs.Length);
        foreach (var (e, a) in expected.Jobs.Zip(actual.Jobs))
        {
            Assert.Equal(e.JobId, a.JobId);
            Assert.Equal(e.Ids, a.Ids);
            Assert.Equal(e.Requests, a.Requests);
            Assert.Equal(e.Seeds, a.Seeds);
            Assert.Equal(e.Lines, a.Lines);
            Assert.Equal(e.Tenant, a.Tenant);
            Assert.Equal(e.Priority, a.Priority);
            Assert.Equal(e.Cancelled, a.Cancelled);
            Assert.Equal(e.FinishedAt, a.FinishedAt);
            Assert.Equal(e.Checkpoints is null, a.Checkpoints is null);
            for (var i = 0; i < (e.Checkpoints?.Length ?? 0); i++)
            {
                Assert.Equal(e.Checkpoints![i]?.OutputIds, a.Checkpoints![i]?.OutputIds);
                Assert.Equal(e.Checkpoints[i]?.OutputLogprobs, a.Checkpoints[i]?.OutputLogprobs);
                Assert.Equal(e.Checkpoints[i]?.PromptLogprobs, a.Checkpoints[i]?.PromptLogprobs);
            }
        }
    }
}
