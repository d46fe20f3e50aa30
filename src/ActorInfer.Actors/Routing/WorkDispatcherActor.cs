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
/// wait (highest priority first) until a worker has room, then go to the worker with the most room. A worker whose
/// endpoint terminates (the member left, was downed, or a new incarnation on its address took its place) gives its
/// unfinished requests back to the head of the queue, each with its latest checkpoint.
/// </summary>
internal sealed class WorkDispatcherActor : ReceiveActor, IWithTimers
{
    /// <summary>Orders per message: a batch of long prompts stays well under the remote frame.</summary>
    private const int MaxOrdersPerMessage = 64;

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
    }

    /// <summary>Hands waiting requests to the worker with the most room until none has room or none waits.</summary>
    private void Dispatch()
    {
        while (_pending.Count > 0 && _workers.Count > 0)
        {
            var (endpoint, worker) = _workers.MaxBy(w => w.Value.Free);
            if (endpoint is null || worker.Free <= 0) return;
            var take = Math.Min(Math.Min(worker.Free, MaxOrdersPerMessage), _pending.Count);
            var items = _pending.GetRange(0, take);
            _pending.RemoveRange(0, take);
            foreach (var item in items)
            {
                _pendingKeys.Remove(item.Key);
                _owner[item.Key] = endpoint;
                worker.Assigned[item.Key] = item;
            }
            worker.Sent += take;
            endpoint.Tell(new Assign(items.Select(WorkOrder.From).ToArray()));
        }
    }

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
                if (_workers.TryGetValue(group.Key, out var w)) w.Assigned.Remove(key);
            }
            group.Key.Tell(new WorkerProtocol.Withdraw(group.ToArray()));
        }
    }

    private void Results(Results m)
    {
        var address = _workers.TryGetValue(Sender, out var worker) ? worker.Address : Sender.Path.Address.ToString();
        var items = new List<SchedulerProtocol.FinishedItem>(m.Keys.Length);
        for (var i = 0; i < m.Keys.Length; i++)
        {
            if (_owner.TryGetValue(m.Keys[i], out var owner) && _workers.TryGetValue(owner, out var w)) w.Assigned.Remove(m.Keys[i]);
            _owner.Remove(m.Keys[i]);
            // A result that outran its worker's departure: the request may already wait again.
            if (_pendingKeys.Remove(m.Keys[i])) _pending.RemoveAll(p => p.Key == m.Keys[i]);
            items.Add(new SchedulerProtocol.FinishedItem(m.Keys[i], m.Lines[i]));
        }
        _completed[address] = _completed.GetValueOrDefault(address) + items.Count;
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
        public string Address { get; } = address;
        public Dictionary<string, SchedulerProtocol.WorkItem> Assigned { get; } = new(StringComparer.Ordinal);
        public int Slots { get; set; }
        public int Held { get; set; }
        public long Received { get; set; }
        public long Sent { get; set; }

        /// <summary>Room left: the slots, less what the worker held when it last reported and what has been sent since.</summary>
        public int Free => Slots - Held - (int)(Sent - Received);
    }

    private sealed record FindEndpoint(UniqueAddress Member);
}
