using System.Collections.Concurrent;
using ActorInfer.Actors.Arbiter;
using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Control;
using ActorInfer.Actors.Jobs;
using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using ActorInfer.Runtime.Tiers;
using Akka.Actor;
using Akka.Configuration;
using Akka.Event;
using Tier = ActorInfer.Actors.Memory.Tier;

namespace ActorInfer.Actors.Node;

public sealed partial class ActorInferNode
{
    /// <summary>
    /// A node of several models on one device: each model's own actor set (<see cref="NodeActors"/>: memory-pressure,
    /// offload tiers, policy planner, layers, block scheduler), the node's memory-pressure actor for the device as a whole
    /// (configuration, telemetry, operators), the GPU arbiter between them, and one job actor whose requests a router hands
    /// to the model each names.
    /// </summary>
    private static ActorInferNode StartSeveral(ActorInferSettings settings, Config? akkaOverlay, IMemoryProbe? probe, PostgresJournal? journal)
    {
        var loaded = new List<NodeModel>();
        ActorSystem? system = null;
        try
        {
            // Measured once before any model: the CUDA context is the device's, not what an earlier model loaded.
            (long, long)? before = settings.IsCuda ? MachineMemory.Device() : null;
            foreach (var m in settings.Models) loaded.Add(NodeModel.Load(settings.ForModel(m), before, loaded.Sum(l => l.Tiers.Device.BytesHeld)));
            // Each model's tensor-issuing actors on a thread of their own, and on CUDA each model's kernels on a stream of
            // its own, the highest priority's first: neither waits behind the other's host work or queued copies.
            var systemConfig = SystemConfig(settings, akkaOverlay);
            system = ActorSystem.Create("actorinfer", TensorDispatchers(systemConfig, settings.Models.Count).WithFallback(systemConfig));
            ClusterMembership.Join(system, settings);
            var computeTier = settings.IsCuda ? Tier.Gpu : Tier.Cpu;
            LogAllocatorCap(Logging.GetLogger(system, "node"), settings);
            var memory = system.ActorOf(MemoryProtocol.Props(NodeMemorySettings(settings), probe ?? DeviceProbe(settings, loaded)), "memory");
            var served = new List<ServedModel>();
            var top = settings.Models.Max(m => m.Priority);
            var tenants = new List<ArbiterProtocol.Tenant>();
            var turns = settings.Arbiter.OneQueue ? new Scheduling.DeviceTurns() : null;
            for (var i = 0; i < loaded.Count; i++)
            {
                var model = settings.Models[i];
                var own = settings.ForModel(model);
                var log = Logging.GetLogger(system, $"planner {model.Name}");
                var (parts, placement) = Parts(own, loaded[i], probe, line => log.Info(line));
                // The model's budgets are the arbiter's shares: no configured budget and no telemetry of its own.
                parts = parts with
                {
                    Memory = new MemoryProtocol.Settings(null, null, null, settings.Memory.TelemetryInterval, 0),
                    Probe = null,
                    TensorDispatcher = ModelTensorDispatcher(i),
                    // A model below the top priority plans its firm parts for no more than its floor under conservative sizing.
                    FirmFloor = model.Priority < top ? model.MemoryFloor : null,
                    // Its share falls only after its own demand did: such falls are not pressure on its blocks.
                    SoleTopPriority = model.Priority == top && settings.Models.Count(m => m.Priority == top) == 1,
                    Turns = turns,
                };
                if (settings.IsCuda && loaded[i].Engine is Engine.OffloadedEngine offloaded)
                    offloaded.ComputeStream = new Runtime.Cuda.ComputeStream(high: model.Priority == top && settings.Models.Any(m => m.Priority < top));
                if (loaded[i].Engine is Engine.OffloadedEngine lower && model.Priority < top &&
                    (settings.Arbiter.LowerPriorityNice > 0 || settings.Arbiter.LowerPriorityThreads > 0))
                    lower.HostShare = new Scheduling.HostShare(settings.Arbiter.LowerPriorityNice, settings.Arbiter.LowerPriorityThreads);
                var actors = NodeActors.Start(system, parts, $"model-{i}-");
                served.Add(new ServedModel(model, loaded[i].Factory, actors.Memory, actors.Planner, actors.Scheduler, actors.Tiers, placement,
                    LargestBlock(placement, settings)));
                tenants.Add(new ArbiterProtocol.Tenant(model.Name, model.Priority, model.MemoryFloor, model.MemoryCeiling, actors.Memory, actors.Scheduler,
                    DemandBytes(placement, settings.Scheduler), model.StaticShare)
                {
                    Held = HeldBytes(loaded[i], settings.IsCuda),
                    Allowed = settings.IsCuda ? AllowedBytes(loaded[i]) : null,
                    WeightBytes = loaded[i].Runtime.WeightPlan.Weights.Sum,
                });
            }
            var arbiter = system.ActorOf(ArbiterProtocol.Props(
                new ArbiterProtocol.Settings(computeTier, settings.Arbiter.PollInterval, settings.Arbiter.ChangeThreshold, settings.Arbiter.ReleaseAfter,
                    settings.Arbiter.ReserveSequences), memory, tenants), "arbiter");
            var router = system.ActorOf(ModelRouterProtocol.Props(served.Select(s => KeyValuePair.Create(s.Name, s.Scheduler)).ToArray()), "scheduler");
            for (var i = 0; i < served.Count; i++) WarmUp.Run(system, served[i].Scheduler, served[i].Name, settings.WarmUp, loaded[i].Factory.Config);
            var jobs = system.ActorOf(JobProtocol.Props("actorinfer-jobs", router, settings.ResultsDir, settings.Persistence.SnapshotEvery,
                JobProtocol.Retention.Of(settings.Jobs.Retention)), "jobs");
            var control = system.ActorOf(ControlProtocol.Props(ControlProtocol.Settings.From(settings), jobs, memory, loaded[0].Factory), "control");
            var first = served[0];
            return new ActorInferNode(settings, loaded[0], loaded[0].Factory, system, memory, first.Planner, router, jobs, control)
            {
                ComputeTier = computeTier,
                LargestBlockBytes = first.LargestBlockBytes,
                PolicyPlanner = first.PolicyPlanner,
                TierActors = first.TierActors,
                Models = served,
                Arbiter = arbiter,
                _journal = journal,
                _otherModels = loaded.Skip(1).ToArray(),
            };
        }
        catch
        {
            system?.Terminate().Wait(TimeSpan.FromSeconds(10));
            foreach (var m in loaded) m.Dispose();
            journal?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// What a model holds of the compute tier as its budget counts it: its device tier's bytes (host memory's on a CPU node),
    /// on a GPU node with the CUDA context and the allocator's allowance that the planner takes off a budget.
    /// </summary>
    private static Func<long> HeldBytes(NodeModel model, bool cuda) => () =>
    {
        var held = model.Tiers.Device.BytesHeld;
        return !cuda || held == 0 ? held : DeviceReserve.BudgetFor(held, model.DeviceContextBytes);
    };

    /// <summary>The budget the model's device tier enforces now (a raw share, as its scheduler applied it).</summary>
    private static Func<long> AllowedBytes(NodeModel model) => () => model.Tiers.Device.BudgetBytes;

    private static string ModelTensorDispatcher(int model) => $"{ActorInferSettings.TensorDispatcher}-model-{model}";

    /// <summary>One dispatcher per model, each as the node's tensor dispatcher is configured (one dedicated thread).</summary>
    private static Config TensorDispatchers(Config system, int models)
    {
        var tensor = system.GetConfig(ActorInferSettings.TensorDispatcher);
        var block = $$"""
            {
              type = "{{tensor.GetString("type")}}"
              throughput = {{tensor.GetInt("throughput")}}
              dedicated-thread-pool { thread-count = 1, threadtype = "{{tensor.GetString("dedicated-thread-pool.threadtype")}}" }
            }
            """;
        return ConfigurationFactory.ParseString(string.Join("\n", Enumerable.Range(0, models).Select(i => $"{ModelTensorDispatcher(i)} {block}")));
    }

    /// <summary>
    /// A model's demand as its budget counts it: the budget whose planner's answer holds a block of that many sequences
    /// within the scheduler's bounds (at least one sequence; <see cref="WorkloadPlanner.BudgetHolding"/>: every weight on
    /// the compute tier, on a GPU node with the CUDA context, the allocator's allowance and the way the planner answers a
    /// budget on top). Sized for the block's placement and reserve alone, a top-priority model's share held the next
    /// smaller block: on an H100 the two-tenant replay's chat model got 48 sequences for a demand of 64, 64 for 96 and 96
    /// for 128, and ran 30 of its 57 blocks full while requests waited (docs/perf/h100-tenants-8x-floor-prior/).
    /// </summary>
    internal static Func<ArbiterProtocol.Demand, long> DemandBytes(WorkloadPlanner planner, SchedulerSettings bounds)
    {
        // Only final answers are kept: one the compiled table could not give yet is asked again.
        var known = new ConcurrentDictionary<(int, WorkloadBucket), long>();
        var placed = new ConcurrentDictionary<(int, WorkloadBucket), long>();
        return demand =>
        {
            var sequences = Math.Clamp(demand.Sequences, 1, bounds.MaxGpuBatchSize * bounds.MaxGpuBatches);
            var key = (sequences, demand.Bucket ?? planner.DefaultBucket);
            if (known.TryGetValue(key, out var answered)) return answered;
            var bytes = placed.GetOrAdd(key, k =>
            {
                var size = Math.Min(k.Item1, bounds.MaxGpuBatchSize);
                return planner.BytesFor(size, (k.Item1 + size - 1) / size, k.Item2);
            });
            var (budget, final) = planner.BudgetHolding(sequences, key.Item2, bytes);
            if (final) known.TryAdd(key, budget);
            return budget;
        };
    }

    /// <summary>The device's telemetry for a node of several models: what is free plus what all of them hold (their own buffers are not pressure).</summary>
    private static IMemoryProbe DeviceProbe(ActorInferSettings settings, IReadOnlyList<NodeModel> models) =>
        new HostMemoryProbe(settings.DataDir,
            settings.IsCuda ? () => MachineMemory.Device().Free + models.Sum(m => m.Tiers.Device.BytesHeld) + models[0].DeviceContextBytes : null,
            ownHostBytes: () => models.Sum(m => m.Tiers.Cpu.BytesTaken + (settings.IsCuda ? 0 : m.Tiers.Device.BytesHeld)));
}
