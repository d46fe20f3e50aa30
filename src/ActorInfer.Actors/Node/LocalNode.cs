using System.Collections.Concurrent;
using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using Akka.Actor;
using Akka.Configuration;

namespace ActorInfer.Actors.Node;

/// <summary>
/// A node in this process without HTTP or persistence, for `generate` and `bench`: the same actors a served node
/// runs (<see cref="NodeActors"/>), so every decision (which policy, which block, what to drop, where to re-place) is
/// made by them whether the work came from a file or from HTTP. Budget changes enter through the memory-pressure actor,
/// as `/admin/pressure` and telemetry do; what the actors decided is recorded here for the command to report.
/// </summary>
public sealed class LocalNode : IDisposable
{
    private readonly ActorSystem _system;
    private readonly IActorRef _log;

    private LocalNode(ActorSystem system, NodeActors actors, NodeParts parts)
    {
        _system = system;
        Actors = actors;
        Parts = parts;
        _log = system.ActorOf(Props.Create(() => new EventLog(this)), "events");
        actors.Scheduler.Tell(new SchedulerProtocol.Observe(_log));
        actors.Planner.Tell(new PlannerProtocol.Subscribe(_log));
    }

    public NodeActors Actors { get; }
    public NodeParts Parts { get; }

    /// <summary>Each policy the planner published, in order (the first for the starting budgets).</summary>
    public ConcurrentQueue<PlannerProtocol.PolicyChanged> Policies { get; } = new();

    /// <summary>Each policy's time until the running block fitted it, in arrival order.</summary>
    public ConcurrentQueue<SchedulerProtocol.PolicyHonoured> Honoured { get; } = new();

    public ConcurrentQueue<SchedulerProtocol.BatchesDropped> Drops { get; } = new();

    /// <summary>Each block the scheduler started, in order.</summary>
    public ConcurrentQueue<SchedulerProtocol.BlockStarted> Blocks { get; } = new();

    /// <summary>Blocks that ran out of device memory (handled as pressure: their sequences were requeued).</summary>
    public ConcurrentQueue<SchedulerProtocol.DeviceOutOfMemory> OutOfMemory { get; } = new();

    /// <summary>Told of each policy the planner publishes (on an actor's thread).</summary>
    public Action<PlannerProtocol.PolicyChanged>? PolicyPublished { get; set; }

    /// <summary>Quiet logging; the tensor dispatcher and everything else as a served node has them (reference.conf).</summary>
    private const string LocalConfig = """
        akka.loglevel = WARNING
        akka.log-dead-letters = off
        akka.log-dead-letters-during-shutdown = off
        """;

    public static LocalNode Start(NodeParts parts)
    {
        var system = ActorSystem.Create("actorinfer-local", ConfigurationFactory.ParseString(LocalConfig + "\n" + Diagnostics.IsoConsoleLogger.Config)
            .WithFallback(Configuration.SettingsLoader.Reference));
        try
        {
            return new LocalNode(system, NodeActors.Start(system, parts), parts);
        }
        catch
        {
            system.Terminate().Wait(TimeSpan.FromSeconds(10));
            throw;
        }
    }

    /// <summary>An operator's budget for a tier, handed to the memory-pressure actor exactly as `/admin/pressure` hands it.</summary>
    public void SetBudget(Tier tier, long bytes) => Actors.Memory.Tell(new MemoryProtocol.SetBudget(tier, bytes));

    /// <summary>
    /// Runs the requests through the scheduler and returns one result line per request, in order;
    /// <paramref name="finished"/> hears each block's results as they come.
    /// </summary>
    public IReadOnlyList<string> Run(IReadOnlyList<SchedulerProtocol.WorkItem> items, TimeSpan timeout,
        Action<IReadOnlyList<SchedulerProtocol.FinishedItem>>? finished = null) =>
        ScheduledWork.Run(_system, Actors.Scheduler, items, timeout, finished);

    /// <summary>
    /// Waits until the budget changes sent before have passed the memory-pressure actor and the planner: the planner's
    /// policy for them is in the scheduler's mailbox (and its change signal raised), ahead of the running block's next
    /// step. Safe on the tensor thread, which neither actor runs on.
    /// </summary>
    public void Deliver(TimeSpan timeout)
    {
        foreach (var actor in new[] { Actors.Memory, Actors.Planner })
            actor.Ask<ActorIdentity>(new Identify(null), timeout).Wait();
    }

    /// <summary>
    /// Waits until what was sent to the node before has gone through it: each budget change taken by the memory-pressure
    /// actor, planned by the planner, taken by the scheduler (honoured at once where no block runs) and recorded here.
    /// The budget changes run on the actors' dispatcher, which on a loaded machine lags the tensor thread by hundreds of
    /// decoding steps: a job can finish with changes still on their way, and their records would come after it.
    /// </summary>
    public void Settle(TimeSpan timeout)
    {
        // Each actor takes its mail in order, Identify among it: its answer comes after everything sent to the actor
        // before, and what the actor sent on for it is in the next one's mailbox by then.
        foreach (var actor in new[] { Actors.Memory, Actors.Planner, Actors.Scheduler, _log })
            actor.Ask<ActorIdentity>(new Identify(null), timeout).Wait();
    }

    private sealed class EventLog : ReceiveActor
    {
        public EventLog(LocalNode node)
        {
            Receive<SchedulerProtocol.PolicyHonoured>(node.Honoured.Enqueue);
            Receive<SchedulerProtocol.BatchesDropped>(node.Drops.Enqueue);
            Receive<SchedulerProtocol.BlockStarted>(node.Blocks.Enqueue);
            Receive<SchedulerProtocol.DeviceOutOfMemory>(node.OutOfMemory.Enqueue);
            Receive<PlannerProtocol.PolicyChanged>(m =>
            {
                node.Policies.Enqueue(m);
                node.PolicyPublished?.Invoke(m);
            });
            ReceiveAny(_ => { });
        }
    }

    public void Dispose() => _system.Terminate().Wait(TimeSpan.FromSeconds(10));
}
