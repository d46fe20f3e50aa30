using ActorInfer.Actors.Scheduling;
using Akka.Actor;
using Akka.Cluster;
using AkkaCluster = Akka.Cluster.Cluster;
using Akka.Event;
using static ActorInfer.Actors.Routing.WorkerProtocol;

namespace ActorInfer.Actors.Routing;

/// <summary>
/// A gateway's dispatcher, in the block scheduler's place: the job actor enqueues and withdraws here and gets the
/// scheduler's <see cref="SchedulerProtocol.Finished"/> and <see cref="SchedulerProtocol.Checkpointed"/> back. Requests
/// wait (highest priority first) until a worker has room, then go to the worker with the most room. A worker's room is
/// its share of all the unfinished work, in proportion to the slots it reports (and never less than those slots): a
/// worker alone holds the whole queue, as a node's scheduler does, so that it forms the blocks a node would (a block
/// takes the waiting requests of its length bucket from the whole queue, not from two blocks' worth of it). A worker that
/// joins while the others hold more than their shares takes its share of their queued requests. A worker whose endpoint terminates (the member left, was downed, or a new incarnation
/// on its address took its place) gives its unfinished requests back to the head of the queue, each with its latest
/// checkpoint.
/// </summary>
internal sealed class WorkDispatcherActor : ReceiveActor, IWithTimers
{
    /// <summary>Orders per message, and their request bodies' characters: a batch stays well under the remote frame (4 MiB).</summary>
    private const int MaxOrdersPerMessage = 256;
    private const int MaxCharsPerMessage = 512 * 1024;

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly AkkaCluster _cluster = AkkaCluster.Get(Context.System);
    private readonly List<SchedulerProtocol.WorkItem> _pending = [];
    private readonly HashSet<string> _pendingKeys = new(StringComparer.Ordinal);
    private readonly Dictionary<IActorRef, Worker> _workers = [];
    private readonly Dictionary<string, IActorRef> _owner = new(StringComparer.Ordinal);
    /// <summary>Worker members that are up, by their unique address, until an endpoint answers there.</summary>
    private readonly HashSet<UniqueAddress> _upWorkers = [];
    /// <summary>Results per worker address over the dispatcher's life (a restarted worker on its port adds to its line).</summary>
    private readonly Dictionary<string, long> _completed = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _devices = new(StringComparer.Ordinal);
    private IActorRef _enqueuer = ActorRefs.Nobody;
    private long _redispatched;

    public WorkDispatcherActor()
    {
        Receive<ClusterEvent.MemberUp>(m => WorkerUp(m.Member));
        Receive<ClusterEvent.MemberRemoved>(m => _upWorkers.Remove(m.Member.UniqueAddress));
        Receive<ClusterEvent.IMemberEvent>(_ => { });
        Receive<FindEndpoint>(m => Find(m.Member));
        Receive<ActorIdentity>(Identified);
        Receive<Capacity>(Capacity);
        Receive<SchedulerProtocol.Enqueue>(m =>
        {
            _enqueuer = Sender;
            foreach (var item in m.Items)
                if (!_pendingKeys.Contains(item.Key) && !_owner.ContainsKey(item.Key)) Queue(item, ahead: false);
            Dispatch();
        });
        Receive<SchedulerProtocol.Withdraw>(Withdraw);
        Receive<Results>(Results);
        Receive<Checkpoints>(Checkpoints);
        // A worker's streaming tokens: published here as the local schedulers publish theirs (the gateway's token streams).
        Receive<WorkerProtocol.Tokens>(m => Context.System.EventStream.Publish(new SchedulerProtocol.TokensLanded(
            m.Keys.Select((key, i) => new SchedulerProtocol.LandedTokens(key, m.From[i], m.Ids[i], m.Logprobs[i])).ToArray())));
        Receive<Terminated>(m => Left(m.ActorRef));
        Receive<SchedulerProtocol.GetStatus>(_ =>
            Sender.Tell(new SchedulerProtocol.SchedulerStatus(_pending.Count + _workers.Values.Sum(w => w.Assigned.Count), null, null)));
        Receive<GetWorkers>(_ => Sender.Tell(Workers()));
        // Block progress is each worker's own; a gateway's observers see none.
        Receive<SchedulerProtocol.Observe>(_ => { });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    protected override void PreStart() =>
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.IMemberEvent));

    protected override void PostStop() => _cluster.Unsubscribe(Self);

    private void WorkerUp(Member member)
    {
        if (!member.HasRole("worker") || member.Address == _cluster.SelfAddress) return;
        _upWorkers.Add(member.UniqueAddress);
        Find(member.UniqueAddress);
    }

    /// <summary>Asks the member for its endpoint; a worker joins before its model is loaded, so this repeats until it answers.</summary>
    private void Find(UniqueAddress member)
    {
        if (!_upWorkers.Contains(member)) return;
        Context.ActorSelection(new RootActorPath(member.Address) / "user" / EndpointName).Tell(new Identify(member));
    }

    private void Identified(ActorIdentity m)
    {
        if (m.MessageId is not UniqueAddress member || !_upWorkers.Contains(member)) return;
        if (m.Subject is not { } endpoint)
        {
            Timers.StartSingleTimer(member, new FindEndpoint(member), TimeSpan.FromMilliseconds(500));
            return;
        }
        _upWorkers.Remove(member);
        if (_workers.ContainsKey(endpoint)) return;
        _workers[endpoint] = new Worker(member.Address.ToString());
        _completed.TryAdd(member.Address.ToString(), 0);
        Context.Watch(endpoint);
        endpoint.Tell(Hello.Instance);
        _log.Info("dispatcher: worker {0} joined ({1} workers)", member.Address, _workers.Count);
    }

    private void Capacity(Capacity m)
    {
        if (!_workers.TryGetValue(Sender, out var worker)) return;
        worker.Slots = m.Slots;
        worker.Held = m.Held;
        worker.Received = m.Received;
        _devices[worker.Address] = m.Device;
        Dispatch();
        if (worker.Joining && m.Slots > 0)
        {
            worker.Joining = false;
            Welcome(worker);
        }
    }

    /// <summary>Hands waiting requests to the worker with the most room until none has room or none waits.</summary>
    private void Dispatch()
    {
        var unfinished = Unfinished();
        var slots = TotalSlots();
        while (_pending.Count > 0 && _workers.Count > 0)
        {
            var (endpoint, worker) = _workers.MaxBy(w => w.Value.Free(unfinished, slots));
            var free = worker.Free(unfinished, slots);
            if (endpoint is null || free <= 0) return;
            var items = TakeBatch(free);
            foreach (var item in items)
            {
                _pendingKeys.Remove(item.Key);
                _owner[item.Key] = endpoint;
                worker.Assign(item);
            }
            worker.Sent += items.Count;
            endpoint.Tell(new Assign(items.Select(WorkOrder.From).ToArray()));
        }
    }

    /// <summary>The first waiting requests, at most <paramref name="most"/>, as many as one message carries (at least one).</summary>
    private List<SchedulerProtocol.WorkItem> TakeBatch(int most)
    {
        var (count, chars) = (0, 0L);
        while (count < Math.Min(Math.Min(most, MaxOrdersPerMessage), _pending.Count))
        {
            chars += _pending[count].RequestJson?.Length ?? 0;
            if (count > 0 && chars > MaxCharsPerMessage) break;
            count++;
        }
        var items = _pending.GetRange(0, count);
        _pending.RemoveRange(0, count);
        return items;
    }

    /// <summary>
    /// A worker that has just joined, while nothing waits here and others hold more than their shares (it joined mid-job):
    /// the latest requests handed to them (queued behind the rest, not running) are withdrawn and wait here again, ahead of
    /// new work, for the newcomer, up to its share. Once only: after that each worker runs its share, so a job's requests
    /// stay where their blocks form (a faster worker does not take a slower one's queue). A withdrawn request that did run
    /// already is answered once: its worker no longer sends its result, and the job actor keeps the first result of a line.
    /// </summary>
    private void Welcome(Worker newcomer)
    {
        foreach (var (endpoint, busy) in _workers.Where(w => !ReferenceEquals(w.Value, newcomer)).ToArray())
        {
            var (unfinished, slots) = (Unfinished(), TotalSlots());
            var room = newcomer.Free(unfinished, slots);
            var excess = busy.Assigned.Count - busy.Allowance(unfinished, slots);
            if (_pending.Count > 0 || room < Math.Max(1, newcomer.Slots / 2)) return;
            if (excess < Math.Max(1, busy.Slots / 2)) continue;
            var moved = busy.Latest(Math.Min(room, excess));
            foreach (var item in moved)
            {
                busy.Release(item.Key);
                _owner.Remove(item.Key);
            }
            endpoint.Tell(new WorkerProtocol.Withdraw(moved.Select(i => i.Key).ToArray()));
            // Each goes ahead of the requests of its priority; latest first in, so the oldest ends up in front.
            foreach (var item in moved) Queue(item, ahead: true);
            _log.Info("dispatcher: {0} queued requests of worker {1} move to worker {2}, which joined", moved.Count, busy.Address, newcomer.Address);
            Dispatch();
        }
    }

    /// <summary>Requests not finished: waiting here or held by a worker.</summary>
    private int Unfinished() => _pending.Count + _workers.Values.Sum(w => w.Assigned.Count);

    private int TotalSlots() => _workers.Values.Sum(w => w.Slots);

    private void Withdraw(SchedulerProtocol.Withdraw m)
    {
        var keys = m.Keys.ToHashSet(StringComparer.Ordinal);
        _pending.RemoveAll(i => keys.Contains(i.Key));
        _pendingKeys.ExceptWith(keys);
        foreach (var group in keys.Where(_owner.ContainsKey).GroupBy(k => _owner[k]).ToArray())
        {
            foreach (var key in group)
            {
                _owner.Remove(key);
                if (_workers.TryGetValue(group.Key, out var w)) w.Release(key);
            }
            group.Key.Tell(new WorkerProtocol.Withdraw(group.ToArray()));
        }
    }

    private void Results(Results m)
    {
        var address = _workers.TryGetValue(Sender, out var worker) ? worker.Address : Sender.Path.Address.ToString();
        var items = new List<SchedulerProtocol.FinishedItem>(m.Keys.Length);
        var expected = 0;
        for (var i = 0; i < m.Keys.Length; i++)
        {
            var owned = _owner.Remove(m.Keys[i], out var owner);
            if (owned && _workers.TryGetValue(owner!, out var w)) w.Release(m.Keys[i]);
            // A result that outran its worker's departure (or a move to another worker): the request may already wait again.
            var waiting = _pendingKeys.Remove(m.Keys[i]);
            if (waiting) _pending.RemoveAll(p => p.Key == m.Keys[i]);
            // A second result of a request (its first came from the worker it had moved from) is not counted again.
            if (owned || waiting) expected++;
            items.Add(new SchedulerProtocol.FinishedItem(m.Keys[i], m.Lines[i]));
        }
        _completed[address] = _completed.GetValueOrDefault(address) + expected;
        _enqueuer.Tell(new SchedulerProtocol.Finished(0, items));
    }

    private void Checkpoints(Checkpoints m)
    {
        var items = new List<SchedulerProtocol.CheckpointedItem>(m.Keys.Length);
        for (var i = 0; i < m.Keys.Length; i++)
        {
            var checkpoint = new SchedulerProtocol.Checkpoint(m.OutputIds[i], m.OutputLogprobs[i], m.PromptLogprobs[i]);
            if (_owner.TryGetValue(m.Keys[i], out var owner) && _workers.TryGetValue(owner, out var w) && w.Assigned.TryGetValue(m.Keys[i], out var item))
                w.Assigned[m.Keys[i]] = item with { Resume = checkpoint };
            items.Add(new SchedulerProtocol.CheckpointedItem(m.Keys[i], checkpoint));
        }
        _enqueuer.Tell(new SchedulerProtocol.Checkpointed(0, items));
    }

    /// <summary>A worker is gone: what it held waits again, ahead of requests of its priority, from its latest checkpoint.</summary>
    private void Left(IActorRef endpoint)
    {
        if (!_workers.Remove(endpoint, out var worker)) return;
        var orphans = worker.Assigned.Values.ToList();
        foreach (var item in orphans)
        {
            _owner.Remove(item.Key);
            Queue(item, ahead: true);
        }
        _redispatched += orphans.Count;
        _log.Warning("dispatcher: worker {0} left; its {1} unfinished requests wait for the other {2} workers ({3} from checkpoints)",
            worker.Address, orphans.Count, _workers.Count, orphans.Count(o => o.Resume is not null));
        Dispatch();
    }

    private void Queue(SchedulerProtocol.WorkItem item, bool ahead)
    {
        var at = ahead
            ? _pending.FindIndex(p => p.Priority <= item.Priority)
            : _pending.FindIndex(p => p.Priority < item.Priority);
        _pending.Insert(at < 0 ? _pending.Count : at, item);
        _pendingKeys.Add(item.Key);
    }

    private WorkerList Workers()
    {
        // A restarted worker's new incarnation may be up before its old one is removed: one line per address.
        var up = _workers.Values.GroupBy(w => w.Address, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.ToList(), StringComparer.Ordinal);
        var list = _completed.Keys.Order(StringComparer.Ordinal).Select(address => up.TryGetValue(address, out var ws)
                ? new WorkerInfo(address, true, _devices.GetValueOrDefault(address, ""), ws[^1].Slots, ws.Sum(w => w.Assigned.Count), _completed[address])
                : new WorkerInfo(address, false, _devices.GetValueOrDefault(address, ""), 0, 0, _completed[address]))
            .ToList();
        return new WorkerList(list, _pending.Count, _redispatched);
    }

    private sealed class Worker(string address)
    {
        private readonly Dictionary<string, long> _assignedAt = new(StringComparer.Ordinal);
        private long _assignments;

        public string Address { get; } = address;
        public Dictionary<string, SchedulerProtocol.WorkItem> Assigned { get; } = new(StringComparer.Ordinal);
        public int Slots { get; set; }
        public int Held { get; set; }
        public long Received { get; set; }
        public long Sent { get; set; }
        /// <summary>Until its first report of slots: then it may take requests from the others (<see cref="Welcome"/>).</summary>
        public bool Joining { get; set; } = true;

        public void Assign(SchedulerProtocol.WorkItem item)
        {
            Assigned[item.Key] = item;
            _assignedAt[item.Key] = ++_assignments;
        }

        public void Release(string key)
        {
            Assigned.Remove(key);
            _assignedAt.Remove(key);
        }

        /// <summary>
        /// <paramref name="count"/> requests it holds from the end of its queue: the lowest priority first, of those the
        /// ones handed to it last (a request of higher priority handed to it late runs early).
        /// </summary>
        public List<SchedulerProtocol.WorkItem> Latest(int count) =>
            Assigned.Values.OrderBy(i => i.Priority).ThenByDescending(i => _assignedAt.GetValueOrDefault(i.Key)).Take(count).ToList();

        /// <summary>
        /// What it may hold: its share of the <paramref name="unfinished"/> requests in proportion to its slots among
        /// <paramref name="totalSlots"/>, and never less than its slots (two blocks of its current policy).
        /// </summary>
        public int Allowance(int unfinished, int totalSlots) =>
            totalSlots <= 0 ? Slots : Math.Max(Slots, (int)Math.Ceiling((double)unfinished * Slots / totalSlots));

        /// <summary>Room left: the allowance, less what the worker held when it last reported and what has been sent since.</summary>
        public int Free(int unfinished, int totalSlots) => Allowance(unfinished, totalSlots) - Held - (int)(Sent - Received);
    }

    private sealed record FindEndpoint(UniqueAddress Member);
}
