using ActorInfer.Actors.Scheduling;
using ActorInfer.Model.Generation;
using Akka.Actor;
using Akka.Event;
using static ActorInfer.Actors.Routing.WorkerProtocol;

namespace ActorInfer.Actors.Routing;

/// <summary>
/// A worker node's face to the gateways: queues their orders on the local block scheduler (the scheduler answers this
/// actor), sends each result and checkpoint to the dispatcher that last sent its key, and reports its capacity after
/// every change. The worker's planner and elasticity stay its own: a policy change only changes the slots it reports.
/// </summary>
internal sealed class WorkerEndpointActor : ReceiveActor, IWithTimers
{
    private readonly IActorRef _scheduler;
    private readonly int _boundSlots;
    private readonly string _device;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    /// <summary>Every key this worker holds (queued or running), and the dispatcher its result goes to.</summary>
    private readonly Dictionary<string, IActorRef> _held = new(StringComparer.Ordinal);
    private readonly HashSet<IActorRef> _dispatchers = [];
    private long _received;
    private int _slots;
    private int _queued;

    public WorkerEndpointActor(IActorRef scheduler, int boundSlots, string device)
    {
        _scheduler = scheduler;
        _boundSlots = boundSlots;
        _slots = boundSlots;
        _device = device;

        Receive<Hello>(_ =>
        {
            Remember(Sender);
            Sender.Tell(Capacity());
        });
        Receive<Assign>(Assign);
        Receive<WorkerProtocol.Withdraw>(m =>
        {
            foreach (var key in m.Keys) _held.Remove(key);
            _scheduler.Tell(new SchedulerProtocol.Withdraw(m.Keys));
            Sender.Tell(Capacity());
        });
        Receive<SchedulerProtocol.Finished>(Finished);
        Receive<SchedulerProtocol.Checkpointed>(Checkpointed);
        Receive<SchedulerProtocol.TokensLanded>(Landed);
        Receive<SchedulerProtocol.SchedulerStatus>(s =>
        {
            var slots = 2 * (s.NextPolicy?.BlockSize ?? _boundSlots / 2);
            var changed = slots != _slots;
            (_slots, _queued) = (slots, s.Queued);
            if (changed) Broadcast();
        });
        Receive<Terminated>(m => _dispatchers.Remove(m.ActorRef));
        Receive<PollScheduler>(_ => _scheduler.Tell(SchedulerProtocol.GetStatus.Instance));
    }

    public ITimerScheduler Timers { get; set; } = null!;

    protected override void PreStart()
    {
        Timers.StartPeriodicTimer("poll", PollScheduler.Instance, TimeSpan.Zero, TimeSpan.FromSeconds(1));
        // Streaming requests' tokens as the local scheduler chooses them, for the gateways that sent them.
        Context.System.EventStream.Subscribe(Self, typeof(SchedulerProtocol.TokensLanded));
    }

    protected override void PostStop() => Context.System.EventStream.Unsubscribe(Self);

    private void Assign(Assign m)
    {
        Remember(Sender);
        var items = new List<SchedulerProtocol.WorkItem>();
        foreach (var order in m.Orders)
        {
            _received++;
            // A gateway that restarted sends again what this worker runs already: only the answer's address changes.
            var known = _held.ContainsKey(order.Key);
            _held[order.Key] = Sender;
            if (known) continue;
            CompletionRequest request;
            try
            {
                request = CompletionRequestParser.Parse(order.RequestJson);
            }
            catch (RequestValidationException ex)
            {
                _held.Remove(order.Key);
                Sender.Tell(new Results([order.Key], [CompletionJson.ErrorLine(order.Id, LineNumber(order.Key), ex.Param, ex.Message)]));
                continue;
            }
            items.Add(new SchedulerProtocol.WorkItem(order.Key, order.Id, request, order.Seed, order.Priority)
            {
                RequestJson = order.RequestJson,
                Resume = order.OutputIds is { } ids
                    ? new SchedulerProtocol.Checkpoint(ids, order.OutputLogprobs ?? [], order.PromptLogprobs)
                    : null,
            });
        }
        if (items.Count > 0) _scheduler.Tell(new SchedulerProtocol.Enqueue(items));
        Sender.Tell(Capacity());
    }

    private void Finished(SchedulerProtocol.Finished m)
    {
        foreach (var group in m.Results.Where(r => _held.ContainsKey(r.Key)).GroupBy(r => _held[r.Key]))
        {
            var results = group.ToArray();
            foreach (var r in results) _held.Remove(r.Key);
            group.Key.Tell(new Results(results.Select(r => r.Key).ToArray(), results.Select(r => r.ResultLine).ToArray()));
        }
        Broadcast();
    }

    private void Checkpointed(SchedulerProtocol.Checkpointed m)
    {
        foreach (var group in m.Items.Where(c => _held.ContainsKey(c.Key)).GroupBy(c => _held[c.Key]))
        {
            var items = group.ToArray();
            group.Key.Tell(new Checkpoints(items.Select(c => c.Key).ToArray(), items.Select(c => c.Checkpoint.OutputIds.ToArray()).ToArray(),
                items.Select(c => c.Checkpoint.OutputLogprobs.ToArray()).ToArray(), items.Select(c => c.Checkpoint.PromptLogprobs?.ToArray()).ToArray()));
        }
    }

    private void Landed(SchedulerProtocol.TokensLanded m)
    {
        foreach (var group in m.Sequences.Where(t => _held.ContainsKey(t.Key)).GroupBy(t => _held[t.Key]))
        {
            // A gateway in this process has them already: its token streams follow this node's event stream.
            if (group.Key.Path.Address.HasLocalScope) continue;
            var tokens = group.ToArray();
            group.Key.Tell(new Tokens(tokens.Select(t => t.Key).ToArray(), tokens.Select(t => t.From).ToArray(), tokens.Select(t => t.Ids.ToArray()).ToArray(),
                tokens.Select(t => t.Logprobs?.ToArray()).ToArray()));
        }
    }

    private void Remember(IActorRef dispatcher)
    {
        if (!_dispatchers.Add(dispatcher)) return;
        Context.Watch(dispatcher);
        _log.Info("worker: dispatcher {0} sends work here", dispatcher.Path);
    }

    private void Broadcast()
    {
        var capacity = Capacity();
        foreach (var d in _dispatchers) d.Tell(capacity);
    }

    private Capacity Capacity() => new(_slots, _held.Count, _received, _queued, _device);

    /// <summary>A job line's number (its key is JOB#INDEX, from 0) for an error line.</summary>
    private static int LineNumber(string key) =>
        int.TryParse(key.AsSpan(key.LastIndexOf('#') + 1), out var index) ? index + 1 : 0;

    private sealed record PollScheduler
    {
        public static readonly PollScheduler Instance = new();
    }
}
