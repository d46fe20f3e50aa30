using Akka.Actor;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;

namespace ActorInfer.Actors.Scheduling;

/// <summary>
/// The scheduler's accepted work not yet in a block: higher priority first, then arrival order, and a requeued
/// sequence ahead of waiting work of its priority (the latest requeued first). It also keeps when each item began
/// waiting for memory: only waits while no policy fits count against the scheduler's limit.
/// </summary>
/// <param name="bucketOf">The workload bucket of an item (its context and tokens left to generate); null: no buckets, blocks take any item.</param>
/// <param name="regenerate">
/// Whether a resumed item (requeued, or recovered with a checkpoint) regenerates its tokens from its prompt rather than
/// resuming from them: a batch-invariant engine forms a token by decoding in every run, where a resumed prompt would form
/// the tokens it carries by a prefill. Its checkpoint is still told; with greedy choice (or the counter-based sampler) the
/// tokens come again as they were.
/// </param>
internal sealed class WaitingWork(Func<WorkItem, Planner.WorkloadBucket>? bucketOf = null, bool regenerate = false)
{
    private readonly PriorityQueue<(WorkItem Item, IActorRef ReplyTo), (int Priority, long Arrival)> _queue = new();
    private readonly Dictionary<WorkItem, Planner.WorkloadBucket> _buckets = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<string, long> _waitingForMemorySince = [];
    private long _arrivals;
    private long _requeues;

    public int Count => _queue.Count;

    public void Add(WorkItem item, IActorRef replyTo)
    {
        item = Entering(item);
        Classify(item);
        _queue.Enqueue((item, replyTo), (-item.Priority, _arrivals++));
    }

    /// <summary>A dropped sequence, with its progress (dropped here when it regenerates), back ahead of the waiting work of its priority.</summary>
    public void Requeue(WorkItem resumed, IActorRef replyTo)
    {
        resumed = Entering(resumed);
        Classify(resumed);
        _queue.Enqueue((resumed, replyTo), (-resumed.Priority, -(++_requeues)));
    }

    private WorkItem Entering(WorkItem item) => regenerate && item.Resume is not null ? item with { Resume = null } : item;

    private void Classify(WorkItem item)
    {
        if (bucketOf is not null) _buckets[item] = bucketOf(item);
    }

    /// <summary>The bucket of the item that runs next (null without buckets or work).</summary>
    public Planner.WorkloadBucket? HeadBucket =>
        bucketOf is not null && _queue.TryPeek(out var head, out _) ? _buckets[head.Item] : null;

    /// <summary>
    /// The bucket the next block holds, where <paramref name="planned"/> is the bucket of the policy in force (null without
    /// buckets or work): the first waiting item's, or the planned one where that holds the first item and other waiting
    /// items are of it. A short request at the head then joins the block of the longer ones waiting behind it, rather than
    /// running a block of its own (a fifth of a second for one sequence of OPT-6.7B on an H100) while they wait.
    /// </summary>
    public Planner.WorkloadBucket? NextBucket(Planner.WorkloadBucket? planned)
    {
        if (HeadBucket is not { } head) return null;
        if (planned is not { } p || head == p || !Planner.BucketRule.Fits(head, p)) return head;
        return _buckets.Values.Contains(p) ? p : head;
    }

    /// <summary>
    /// Requeues the unfinished sequences of dropped GPU batches with their progress (generated tokens, log-probabilities;
    /// the sampler is counter-based), to resume by recomputing their cache from prompt + generated tokens.
    /// </summary>
    /// <returns>The checkpoints to tell each enqueuer, and the tokens whose cache the requeued sequences will recompute.</returns>
    public (List<(IActorRef ReplyTo, Checkpointed Checkpoints)> Tell, int Tokens) RequeueDropped(int block, IReadOnlyList<BlockEntry> dropped)
    {
        var tokens = 0;
        var requeued = new List<(WorkItem Item, Checkpoint Checkpoint, IActorRef ReplyTo)>(dropped.Count);
        foreach (var (item, replyTo, state, _) in dropped)
        {
            tokens += state!.PromptIds.Count + state.OutputIds.Count;
            var checkpoint = new Checkpoint(state.OutputIds.ToArray(), state.OutputLogprobs.ToArray(), state.PromptLogprobs?.ToArray());
            Requeue(item with { Resume = checkpoint }, replyTo);
            requeued.Add((item, checkpoint, replyTo));
        }
        var tell = requeued.GroupBy(r => r.ReplyTo)
            .Select(g => (g.Key, new Checkpointed(block, g.Select(r => new CheckpointedItem(r.Item.Key, r.Checkpoint)).ToArray())))
            .ToList();
        return (tell, tokens);
    }

    /// <summary>
    /// Up to <paramref name="most"/> items, first first; with a bucket, only items that fit it (the others keep their
    /// places), so that a block holds requests of the lengths it was planned for.
    /// </summary>
    public List<(WorkItem Item, IActorRef ReplyTo)> Take(int most, Planner.WorkloadBucket? bucket = null)
    {
        var items = new List<(WorkItem Item, IActorRef ReplyTo)>(Math.Min(most, _queue.Count));
        if (bucket is not { } planned || bucketOf is null)
        {
            while (items.Count < most && _queue.Count > 0) items.Add(_queue.Dequeue());
        }
        else
        {
            var skipped = new List<((WorkItem Item, IActorRef ReplyTo) Element, (int, long) Priority)>();
            while (items.Count < most && _queue.TryDequeue(out var element, out var priority))
            {
                if (Planner.BucketRule.Fits(_buckets[element.Item], planned)) items.Add(element);
                else skipped.Add((element, priority));
            }
            foreach (var (element, priority) in skipped) _queue.Enqueue(element, priority);
        }
        foreach (var (item, _) in items) _buckets.Remove(item);
        return items;
    }

    /// <summary>The items <see cref="Take"/> would take now, left in their places.</summary>
    public List<(WorkItem Item, IActorRef ReplyTo)> Peek(int most, Planner.WorkloadBucket? bucket = null) =>
        _queue.UnorderedItems
            .OrderBy(e => e.Priority)
            .Select(e => e.Element)
            .Where(e => bucket is not { } planned || bucketOf is null || Planner.BucketRule.Fits(_buckets[e.Item], planned))
            .Take(most)
            .ToList();

    /// <summary>Removes the items with these keys; returns how many there were.</summary>
    public int Withdraw(IReadOnlySet<string> keys) =>
        Remove(e => keys.Contains(e.Element.Item.Key)).Count;

    /// <summary>Every waiting item not yet waiting for memory starts to, now.</summary>
    public void StartMemoryWaits()
    {
        var now = System.Diagnostics.Stopwatch.GetTimestamp();
        foreach (var (item, _) in _queue.UnorderedItems.Select(e => e.Element)) _waitingForMemorySince.TryAdd(item.Key, now);
    }

    /// <summary>A policy fits again (or nothing waits): no wait for memory goes on.</summary>
    public void EndMemoryWaits() => _waitingForMemorySince.Clear();

    /// <summary>Removes and returns the items that have waited for memory <paramref name="limit"/> or longer.</summary>
    public List<(WorkItem Item, IActorRef ReplyTo)> TakeWaitedForMemory(TimeSpan limit) =>
        Remove(e => _waitingForMemorySince.TryGetValue(e.Element.Item.Key, out var since) &&
                    System.Diagnostics.Stopwatch.GetElapsedTime(since) >= limit);

    private List<(WorkItem Item, IActorRef ReplyTo)> Remove(Func<((WorkItem Item, IActorRef ReplyTo) Element, (int, long) Priority), bool> which)
    {
        var removed = _queue.UnorderedItems.Where(which).ToList();
        if (removed.Count == 0) return [];
        var kept = _queue.UnorderedItems.Except(removed).ToList();
        _queue.Clear();
        foreach (var (element, priority) in kept) _queue.Enqueue(element, priority);
        foreach (var (element, _) in removed)
        {
            _waitingForMemorySince.Remove(element.Item.Key);
            _buckets.Remove(element.Item);
        }
        return removed.Select(e => e.Element).ToList();
    }
}
