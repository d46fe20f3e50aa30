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

    private ActorDriver(ActorSystem system, IActorRef scheduler)
    {
        _system = system;
        _scheduler = scheduler;
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
        var system = ActorSystem.Create("actorinfer-driver", ConfigurationFactory.ParseString(DispatcherConfig));
        var layers = Enumerable.Range(0, engine.Config.NumHiddenLayers)
            .Select(l => system.ActorOf(LayerProtocol.Props(new LayerIndex(l), engine), $"layer-{l}"))
            .ToArray();
        var scheduler = system.ActorOf(SchedulerProtocol.Props(engine, factory, layers, planner: null), "scheduler");
        scheduler.Tell(new PlannerProtocol.PolicyChanged(policy, TierBudgets.None));
        return new ActorDriver(system, scheduler);
    }

    /// <summary>Runs the requests through the scheduler and returns one result line per request, in order.</summary>
    public IReadOnlyList<string> Run(IReadOnlyList<SchedulerProtocol.WorkItem> items, TimeSpan timeout)
    {
        var inbox = Inbox.Create(_system);
        inbox.Send(_scheduler, new SchedulerProtocol.Enqueue(items));
        var results = new Dictionary<string, string>();
        var deadline = DateTime.UtcNow + timeout;
        while (results.Count < items.Count)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero) throw new TimeoutException($"{items.Count - results.Count} of {items.Count} requests unfinished after {timeout}");
            if (inbox.Receive(left) is SchedulerProtocol.Finished finished)
                foreach (var r in finished.Results) results[r.Key] = r.ResultLine;
        }
        return items.Select(i => results[i.Key]).ToArray();
    }

    public void Dispose() => _system.Terminate().Wait(TimeSpan.FromSeconds(10));
}
