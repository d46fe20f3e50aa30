using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Planner;
using ActorInfer.Model.Generation;
using Akka.Actor;
using Akka.Event;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;

namespace ActorInfer.Actors.Scheduling;

/// <summary>
/// The opening of the scheduler's blocks: the next block takes the waiting requests of the first one's workload bucket
/// (or of the bucket planned, where that holds the first one and others of it wait: <see cref="WaitingWork.NextBucket"/>),
/// under a policy planned for that bucket (asked of the planner once), with each GPU batch opened on the engine; the
/// engine makes ready the host buffers of the next block ahead of it. Owned by the scheduler on the tensor thread.
/// </summary>
internal sealed class BlockOpening(IInferenceEngine engine, CompletionFactory factory, WaitingWork waiting, IActorRef? planner,
    ILoggingAdapter log)
{
    private int _blockCount;
    // The workload asked of the planner for the next block, until its policy arrives.
    private WorkloadBucket? _asked;

    /// <summary>
    /// A request's workload bucket: its context (prompt, and the tokens a resumed sequence had generated: its prompt's
    /// bucket widened by them, <see cref="BucketRule.ForResumed"/>) and the tokens it has left to generate. A request the model cannot take goes in the smallest bucket (its block answers its error).
    /// </summary>
    public static WorkloadBucket BucketOf(WorkItem item, CompletionFactory factory, BucketRule buckets)
    {
        var done = item.Resume?.OutputIds.Count ?? 0;
        try
        {
            var prompt = factory.Create(item.Request, item.Seed).PromptIds.Count;
            return buckets.ForResumed(prompt, done, item.Request.MaxTokens - done);
        }
        catch (RequestValidationException)
        {
            return buckets.For(1, 1);
        }
    }

    /// <summary>A policy arrived: the one planned for the workload asked for is not asked again.</summary>
    public void Arrived(BlockPolicy? policy)
    {
        if (policy?.Bucket is { } planned && planned == _asked) _asked = null;
    }

    /// <summary>
    /// Opens the next block under <paramref name="policy"/>, with the waiting requests it takes. Null when the first
    /// waiting request's bucket waits for a policy of its own (asked of the planner once); nothing was taken then.
    /// </summary>
    /// <param name="failure">
    /// Why the block's GPU batches could not be opened (logged; the block is disposed, its requests to be answered with
    /// it), else null.
    /// </param>
    public RunningBlock? Open(BlockPolicy policy, out string? failure)
    {
        failure = null;
        // The next block holds the requests of the first waiting request's bucket (or of the planned one, where that holds
        // the first and longer requests of it wait), under a policy planned for it.
        if (policy.Bucket is { } planned && planner is not null && waiting.NextBucket(planned) is { } head && head != planned)
        {
            if (_asked != head)
            {
                _asked = head;
                planner.Tell(new PlannerProtocol.PlanWorkload(head));
            }
            return null;
        }
        var id = ++_blockCount;
        var items = waiting.Take(policy.BlockSize, policy.Bucket);
        var sequences = RunningBlock.Entries(items, factory);
        var runnable = sequences.Where(s => s.State is not null).ToList();
        var batches = runnable.Chunk(policy.GpuBatchSize).ToList();
        var block = new RunningBlock(id, policy, sequences, batches.Count)
        {
            StartedAt = System.Diagnostics.Stopwatch.GetTimestamp(), HostBuffersAtStart = engine.HostBuffers,
        };
        try
        {
            for (var b = 0; b < batches.Count; b++)
                block.Work[b] = engine.Open(batches[b].Select(s => s.State!).ToArray());
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            block.Dispose();
            log.Error(ex, "block {0} could not be opened", id);
            failure = ex.Message;
        }
        return block;
    }

    /// <summary>
    /// A policy has just applied: the engine makes ready, in the background, the host buffers of the next block it
    /// would start (the waiting requests it would take), so that the block does not page-lock them itself.
    /// </summary>
    public void Prepare(BlockPolicy? policy)
    {
        if (policy is null || waiting.Count == 0) return;
        // A block of another bucket waits for its own policy (Open): that one prepares.
        if (policy.Bucket is { } planned && planner is not null && waiting.NextBucket(planned) is { } head && head != planned) return;
        var states = RunningBlock.Entries(waiting.Peek(policy.BlockSize, policy.Bucket), factory)
            .Where(e => e.State is not null).Select(e => e.State!).ToArray();
        if (engine.Prepare(policy, states) is { } prepared)
            log.Info($"host buffers for the next block ({states.Length} sequences, policy {policy}): {Planning.ByteSize.Format(prepared.WantedBytes)} " +
                     $"on the CPU tier, {Planning.ByteSize.Format(prepared.QueuedBytes)} to prepare in the background");
    }
}
