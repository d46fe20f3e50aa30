using ActorInfer.Actors.Engine;
using Akka.Actor;
using Akka.Event;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;

namespace ActorInfer.Actors.Scheduling;

/// <summary>
/// What the scheduler tells of each block as it starts and as it finishes: a log line and a message to its observers,
/// and at its finish each enqueuer's results. A finished block's line sets its measured throughput beside the
/// prediction, and says where its large host buffers came from.
/// </summary>
internal sealed class BlockReports(IInferenceEngine engine, Action<object> publish, ILoggingAdapter log)
{
    /// <summary>The block has opened, after <paramref name="decodingSteps"/> decoding steps of the scheduler.</summary>
    public void Started(RunningBlock block, long decodingSteps)
    {
        // One entry per request taken, none dropped yet.
        var (requests, batches) = (block.Sequences.Count, block.Work.Length);
        log.Info("block {0}: {1} sequences in {2} GPU batches, policy {3}", block.Id, requests, batches, block.Policy);
        publish(new BlockStarted(block.Id, block.Policy, requests, batches) { AfterDecodingSteps = decodingSteps });
    }

    /// <summary>The block has finished: each enqueuer is told its sequences' <paramref name="results"/>.</summary>
    public void Finished(RunningBlock block, List<(IActorRef ReplyTo, FinishedItem Item)> results)
    {
        foreach (var group in results.GroupBy(r => r.ReplyTo))
            group.Key.Tell(new Finished(block.Id, group.Select(r => r.Item).ToArray()));
        var measured = block.Measured();
        var hostBuffers = HostBuffersOf(block);
        if (block.Policy.PredictedTokensPerSecond is { } predicted && measured.Tokens > 0)
            log.Info($"block {block.Id}: {measured.Tokens} tokens in {measured.Seconds:F3} s: {measured.TokensPerSecond:F1} token/s measured, " +
                     $"{predicted:F1} predicted for a full block of {block.Policy.BlockSize} ({block.Sequences.Count} sequences ran)" +
                     AskedOf(block, predicted) + hostBuffers);
        publish(new BlockFinished(block.Id, results.Count, block.Step.Value)
        {
            Tokens = measured.Tokens, Seconds = measured.Seconds, PredictedTokensPerSecond = block.Policy.PredictedTokensPerSecond,
            Policy = block.Policy,
        });
    }

    /// <summary>
    /// Where the block's sequences asked fewer tokens than the full block its prediction counts (mixed generation
    /// lengths, or fewer sequences): the prediction for the tokens asked, at the full block's pace. Empty otherwise.
    /// </summary>
    private static string AskedOf(RunningBlock block, double predicted)
    {
        if (block.Policy.Bucket is not { } bucket || bucket.GenerationLength <= 0) return "";
        var full = (long)block.Policy.BlockSize * bucket.GenerationLength;
        var asked = block.Asked(bucket.GenerationLength);
        return asked <= 0 || asked >= full ? "" : $", {predicted * asked / full:F1} for the {asked} tokens its sequences asked of {full}";
    }

    /// <summary>
    /// The block's large host buffers by where they came from (prepared in the background, or made inline: on CUDA
    /// page-locked on this thread), for its log line; empty when it took none.
    /// </summary>
    private string HostBuffersOf(RunningBlock block)
    {
        if (engine.HostBuffers is not { } now || block.HostBuffersAtStart is not { } before) return "";
        var d = now - before;
        if (d.WorkerFailures > 0)
            log.Warning("block {0}: the CPU tier's background worker failed {1} times ({2}); the block made what it needed itself",
                block.Id, d.WorkerFailures, d.LastFailure ?? "");
        if (d.ServedPreparedBytes == 0 && d.InlineBytes == 0 && d.ReusedBytes == 0 && d.PreparedBytes == 0 && d.ReleasedBytes == 0) return "";
        static string F(long bytes) => Planning.ByteSize.Format(bytes);
        return $"; host buffers: {F(d.ServedPreparedBytes)} from the prepared pool, {F(d.InlineBytes)} made inline " +
               $"(touching {d.InlineTouching.TotalSeconds:F2} s, registering {d.InlineRegistering.TotalSeconds:F2} s), {F(d.ReusedBytes)} reused; " +
               $"in the background meanwhile {F(d.PreparedBytes)} prepared ({d.Preparing.TotalSeconds:F2} s), " +
               $"{F(d.ReleasedBytes)} released ({d.Releasing.TotalSeconds:F2} s)";
    }
}
