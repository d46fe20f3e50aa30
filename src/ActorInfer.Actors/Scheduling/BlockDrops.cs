using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Planner;
using Akka.Actor;
using Akka.Event;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;

namespace ActorInfer.Actors.Scheduling;

/// <summary>
/// The sequences a running block gives up, back in the queue with their progress: those of GPU batches dropped for a
/// policy, and every unfinished one when the device ran out of memory. Each drop is logged and published to the
/// scheduler's observers; the scheduler ends the block where nothing of it is left.
/// </summary>
internal sealed class BlockDrops(IInferenceEngine engine, WaitingWork waiting, Action<object> publish, ILoggingAdapter log)
{
    /// <summary>
    /// Requeues the unfinished sequences of dropped GPU batches, ahead of waiting work of the same priority, with
    /// their progress (generated tokens, log-probabilities; the sampler is counter-based), to resume by recomputing
    /// their cache from prompt + generated tokens.
    /// </summary>
    public void Requeue(RunningBlock block, int droppedBatches, List<BlockEntry> dropped)
    {
        var (checkpoints, tokens) = waiting.RequeueDropped(block.Id, dropped);
        // Told before any requeued sequence can finish, so each enqueuer sees a sequence's checkpoint before its result.
        foreach (var (replyTo, checkpointed) in checkpoints) replyTo.Tell(checkpointed);
        log.Info("block {0}: dropped {1} GPU batches, {2} sequences requeued", block.Id, droppedBatches, dropped.Count);
        publish(new BatchesDropped(block.Id, droppedBatches, dropped.Count, tokens));
    }

    /// <summary>
    /// The device ran out of memory: a pressure event, not a failure. Every unfinished sequence of the block is
    /// requeued with its progress (what it has generated so far stays valid whatever position failed); the block is
    /// left with no batch, for the scheduler to end. Returns the policy the next blocks run under until a policy
    /// arrives: <paramref name="policy"/> at half the size.
    /// </summary>
    public BlockPolicy? OutOfMemory(RunningBlock block, string error, BlockPolicy? policy)
    {
        var held = engine.DeviceBytesHeld;
        var batches = 0;
        for (var b = block.Work.Length - 1; b >= 0; b--)
            if (block.Drop(b)) batches++;
        var requeued = block.TakeDropped();
        if (batches > 0) Requeue(block, batches, requeued);
        var halved = policy?.Halved();
        log.Warning("block {0}: the device ran out of memory ({1}); {2} sequences requeued, policy {3} -> {4}", block.Id, error,
            requeued.Count, policy?.ToString() ?? "none", halved?.ToString() ?? "none");
        publish(new DeviceOutOfMemory(block.Id, held, requeued.Count, error));
        return halved;
    }
}
