using ActorInfer.Actors.Layers;
using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using ActorInfer.Model.Generation;
using Akka.Actor;
using Akka.Configuration;

namespace ActorInfer.Actors.Engine;

/// <summary>
/// An in-process actor system with one layer actor per decoder layer and a block scheduler, driving an engine
/// for `generate` and `bench`: the same actors a node runs, without persistence or HTTP.
/// </summary>
public sealed class ActorDriver : IDisposable
{
    private readonly ActorSystem _system;
    private readonly IActorRef _scheduler;
    private readonly Runtime.Schedule.ChangeSignal? _changes;

    private ActorDriver(ActorSystem system, IActorRef scheduler, Runtime.Schedule.ChangeSignal? changes)
    {
        _system = system;
        _scheduler = scheduler;
        _changes = changes;
        var events = system.ActorOf(Props.Create(() => new EventLog(Honoured, Drops, OutOfMemory)));
        scheduler.Tell(new SchedulerProtocol.Observe(events));
    }

    /// <summary>Each policy's time until the running block fitted it, in arrival order.</summary>
    public System.Collections.Concurrent.ConcurrentQueue<SchedulerProtocol.PolicyHonoured> Honoured { get; } = new();

    public System.Collections.Concurrent.ConcurrentQueue<SchedulerProtocol.BatchesDropped> Drops { get; } = new();

    /// <summary>Blocks that ran out of device memory (handled as pressure: their sequences were requeued).</summary>
    public System.Collections.Concurrent.ConcurrentQueue<SchedulerProtocol.DeviceOutOfMemory> OutOfMemory { get; } = new();

    /// <summary>A new block policy for the scheduler (as the planner would publish for new budgets, which it enforces once honoured).</summary>
    /// <param name="changedAt">When the budget change behind the policy happened (a Stopwatch timestamp), if before now.</param>
    /// <param name="plannedAt">When the policy had been chosen for that change (a Stopwatch timestamp), if known.</param>
    public void SetPolicy(BlockPolicy? policy, TierBudgets? budgets = null, long? changedAt = null, long? plannedAt = null)
    {
        // A run-time change raises the engine's signal once it is in the scheduler's mailbox: a layer in progress stops for it.
        var signalled = changedAt is not null && _changes is not null;
        _scheduler.Tell(new PlannerProtocol.PolicyChanged(policy, budgets ?? TierBudgets.None)
        {
            ChangedAt = changedAt, PlannedAt = plannedAt, SentAt = changedAt is null ? null : System.Diagnostics.Stopwatch.GetTimestamp(),
            Signalled = signalled,
        });
        if (signalled) _changes!.Sent();
    }

    private sealed class EventLog : ReceiveActor
    {
        public EventLog(System.Collections.Concurrent.ConcurrentQueue<SchedulerProtocol.PolicyHonoured> honoured,
            System.Collections.Concurrent.ConcurrentQueue<SchedulerProtocol.BatchesDropped> drops,
            System.Collections.Concurrent.ConcurrentQueue<SchedulerProtocol.DeviceOutOfMemory> outOfMemory)
        {
            Receive<SchedulerProtocol.PolicyHonoured>(honoured.Enqueue);
            Receive<SchedulerProtocol.BatchesDropped>(drops.Enqueue);
            Receive<SchedulerProtocol.DeviceOutOfMemory>(outOfMemory.Enqueue);
            ReceiveAny(_ => { });
        }
    }

    /// <summary>The dispatcher every tensor-issuing actor shares: one dedicated thread (see reference.conf).</summary>
    private const string DispatcherConfig = """
        akka.loglevel = WARNING
        akka.log-dead-letters = off
        akka.log-dead-letters-during-shutdown = off
        actorinfer.dispatchers.tensor {
          type = ForkJoinDispatcher
          throughput = 100
          dedicated-thread-pool { thread-count = 1 }
        }
        """;

    public static ActorDriver Start(IInferenceEngine engine, CompletionFactory factory, BlockPolicy policy)
    {
        var system = ActorSystem.Create("actorinfer-driver", ConfigurationFactory.ParseString(DispatcherConfig + "\n" + Diagnostics.IsoConsoleLogger.Config));
        var layers = Enumerable.Range(0, engine.Config.NumHiddenLayers)
            .Select(l => system.ActorOf(LayerProtocol.Props(new LayerIndex(l), engine), $"layer-{l}"))
            .ToArray();
        var scheduler = system.ActorOf(SchedulerProtocol.Props(engine, factory, layers, planner: null), "scheduler");
        scheduler.Tell(new PlannerProtocol.PolicyChanged(policy, TierBudgets.None));
        return new ActorDriver(system, scheduler, engine.Changes);
    }

    /// <summary>Runs the requests through the scheduler and returns one result line per request, in order.</summary>
    public IReadOnlyList<string> Run(IReadOnlyList<SchedulerProtocol.WorkItem> items, TimeSpan timeout)
    {
        // A collector actor completes a task when every result is in: the caller's thread sleeps on the task
        // instead of polling a mailbox beside the tensor thread.
        var done = new TaskCompletionSource<Dictionary<string, string>>(TaskCreationOptions.RunContinuationsAsynchronously);
        var collector = _system.ActorOf(Props.Create(() => new Collector(items.Count, done)));
        _scheduler.Tell(new SchedulerProtocol.Enqueue(items), collector);
        try
        {
            if (!done.Task.Wait(timeout))
                throw new TimeoutException($"requests unfinished after {timeout}");
        }
        finally
        {
            _system.Stop(collector);
        }
        var results = done.Task.Result;
        return items.Select(i => results[i.Key]).ToArray();
    }

    private sealed class Collector : ReceiveActor
    {
        public Collector(int expected, TaskCompletionSource<Dictionary<string, string>> done)
        {
            var results = new Dictionary<string, string>();
            Receive<SchedulerProtocol.Finished>(finished =>
            {
                foreach (var r in finished.Results) results[r.Key] = r.ResultLine;
                if (results.Count >= expected) done.TrySetResult(results);
            });
            // A one-shot run has nothing to resume after a crash: the scheduler's queue holds the requeued work.
            Receive<SchedulerProtocol.Checkpointed>(_ => { });
        }
    }

    public void Dispose() => _system.Terminate().Wait(TimeSpan.FromSeconds(10));
}
