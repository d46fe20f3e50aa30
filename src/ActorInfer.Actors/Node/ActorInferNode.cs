using ActorInfer.Runtime.Cuda;
using ActorInfer.Actors.Routing;
using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Control;
using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Jobs;
using ActorInfer.Actors.Layers;
using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Weights;
using Akka.Actor;
using Akka.Configuration;
using Akka.Event;
using Akka.Persistence.Sql;

namespace ActorInfer.Actors.Node;

/// <summary>
/// One node: its actor system and actors, built from validated settings. The model is loaded and the persistence
/// files are prepared before the actor system exists, so a failure at start leaves nothing running. Its roles decide what
/// runs: a worker loads the model and runs the deciding and running actors; a gateway runs the job actor on the journal;
/// a gateway without the worker role loads no weights and routes its work to the cluster's workers; a worker without
/// the gateway role keeps no journal and takes its work from the gateways.
/// </summary>
public sealed partial class ActorInferNode : IAsyncDisposable
{
    private readonly NodeModel? _model;
    private DataFolderLock? _folderLock;
    private PostgresJournal? _journal;
    // A node serving several models: those after the first (which is _model).
    private IReadOnlyList<NodeModel> _otherModels = [];

    private ActorInferNode(ActorInferSettings settings, NodeModel? model, CompletionFactory factory, ActorSystem system, IActorRef memory, IActorRef planner,
        IActorRef scheduler, IActorRef jobs, IActorRef control)
    {
        Settings = settings;
        _model = model;
        Factory = factory;
        System = system;
        Memory = memory;
        Planner = planner;
        Scheduler = scheduler;
        Jobs = jobs;
        Control = control;
    }

    public ActorInferSettings Settings { get; }
    public ActorSystem System { get; }
    /// <summary>The memory-pressure actor; nobody on a gateway without the worker role.</summary>
    public IActorRef Memory { get; }
    /// <summary>The policy-planner actor; nobody on a gateway without the worker role.</summary>
    public IActorRef Planner { get; }
    /// <summary>Where the job actor enqueues: the block scheduler, or on a gateway without the worker role its work dispatcher.</summary>
    public IActorRef Scheduler { get; }
    /// <summary>The job actor; nobody on a worker without the gateway role.</summary>
    public IActorRef Jobs { get; }
    public IActorRef Control { get; }

    /// <summary>
    /// Every model the node serves with its actors, the default (first) one included; on a gateway without the worker
    /// role, the model it validates requests for (its actors nobody, its scheduler the dispatcher).
    /// </summary>
    public IReadOnlyList<ServedModel> Models { get; private init; } = [];

    /// <summary>The served model of this name, or null.</summary>
    public ServedModel? ModelNamed(string name) => Models.FirstOrDefault(m => m.Name == name);

    /// <summary>The GPU arbiter (<see cref="Arbiter.ArbiterProtocol"/>) of a node that serves several models; null otherwise.</summary>
    public IActorRef? Arbiter { get; private init; }

    /// <summary>Whether the node holds a model and runs it (the worker role).</summary>
    public bool HasModel => _model is not null;

    /// <summary>On a gateway without the worker role: the dispatcher that routes its work to the workers (<see cref="WorkerProtocol"/>).</summary>
    public IActorRef? Dispatcher { get; private init; }
    public Task WhenTerminated => System.WhenTerminated;

    /// <summary>The tier the layers compute on: the GPU on a CUDA node, host memory on a CPU node.</summary>
    public Tier ComputeTier { get; private init; }

    /// <summary>The compute tier's budget that holds the largest block the scheduler's bounds allow, every weight on it.</summary>
    public long LargestBlockBytes { get; private init; }

    /// <summary>
    /// The compute tier's bytes for the largest block the node may run: the scheduler's geometry bounds, within the
    /// planner's block bound (bounds opened to the search's own, e.g. 8,192 x 8,192, would otherwise name a block no
    /// planner gives).
    /// </summary>
    internal static long LargestBlock(Planner.WorkloadPlanner placement, ActorInferSettings settings)
    {
        var size = Math.Min(settings.Scheduler.MaxGpuBatchSize, settings.Planner.MaxBlockSize);
        var batches = Math.Clamp(settings.Planner.MaxBlockSize / Math.Max(1, size), 1, settings.Scheduler.MaxGpuBatches);
        return placement.BytesFor(size, batches);
    }

    /// <summary>The planner object behind the planner actor (the runtime's placement planner).</summary>
    public WorkloadPlanner? PolicyPlanner { get; private init; }

    /// <summary>The offload-tier actors: the compute tier's, and on a GPU node the CPU tier's.</summary>
    public IReadOnlyList<IActorRef> TierActors { get; private init; } = [];

    /// <summary>Validates requests against the loaded model (tokenizer, context length) and decodes results.</summary>
    public CompletionFactory Factory { get; }

    /// <summary>The actor system's configuration: persistence, the user's `akka` overlay, then every reference.</summary>
    public static Config SystemConfig(ActorInferSettings settings, Config? akkaOverlay = null) =>
        PersistenceConfig.For(settings)
            .WithFallback(akkaOverlay ?? Config.Empty)
            .WithFallback(ClusterMembership.For(settings))
            .WithFallback(ConfigurationFactory.ParseString("akka.loglevel = INFO\nakka.log-dead-letters = off\nakka.log-dead-letters-during-shutdown = off"))
            .WithFallback(SettingsLoader.Reference)
            .WithFallback(SqlPersistence.DefaultConfiguration);

    /// <summary>
    /// Starts a node on its data folder, whose lock (<see cref="DataFolderLock"/>) is taken before anything in it is
    /// read; a folder that another node holds throws <see cref="DataFolderLockedException"/>.
    /// </summary>
    public static ActorInferNode Start(ActorInferSettings settings, Config? akkaOverlay = null, IMemoryProbe? probe = null)
    {
        var folderLock = DataFolderLock.Acquire(settings.DataDir);
        try
        {
            var node = StartOwned(settings, akkaOverlay, probe);
            node._folderLock = folderLock;
            return node;
        }
        catch
        {
            folderLock.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A worker on CUDA with a GPU budget caps libtorch's allocator at that budget less the context it measures now, before
    /// any model pins host memory or places a tensor (the allocator reads its configuration once): the node's models
    /// together then never make the device report more than the budget (<see cref="AllocatorSettings.CapDevice"/>).
    /// </summary>
    public static void CapDeviceAllocator(ActorInferSettings settings)
    {
        if (!settings.IsCuda || !settings.Roles.Worker || settings.Memory.GpuBudget is not { } budget) return;
        // Without a device the model's loading refuses it by name; nothing to cap.
        if (!Runtime.Tiers.MachineMemory.HasCuda) return;
        var (free, total) = Runtime.Tiers.MachineMemory.Device();
        AllocatorSettings.CapDevice(budget, total - free, total);
    }

    private static void LogAllocatorCap(ILoggingAdapter log, ActorInferSettings settings)
    {
        if (settings.IsCuda && AllocatorSettings.CapBytes is { } cap && settings.Memory.GpuBudget is { } budget)
            log.Info("GPU: libtorch's allocator capped at {0} (the gpu-budget {1} less the CUDA context and {2} outside the allocator)",
                Planning.ByteSize.FormatBinary(cap), Planning.ByteSize.FormatBinary(budget), Planning.ByteSize.FormatBinary(AllocatorSettings.OutsideAllocatorBytes));
    }

    /// <summary>The node's memory-pressure settings: where its allocator is capped, its GPU budget is also the most an operator can set.</summary>
    internal static MemoryProtocol.Settings NodeMemorySettings(ActorInferSettings settings) =>
        MemoryProtocol.Settings.From(settings.Memory) with
        {
            GpuCeiling = settings.IsCuda && AllocatorSettings.CapBytes is not null ? settings.Memory.GpuBudget : null,
        };

    private static ActorInferNode StartOwned(ActorInferSettings settings, Config? akkaOverlay, IMemoryProbe? probe)
    {
        foreach (var dir in new[] { settings.DataDir, settings.InboxDir, settings.ResultsDir, settings.ControlDir })
            Directory.CreateDirectory(dir);
        PersistenceConfig.PrepareSqlite(settings);
        ClusterMembership.CheckAddress(settings);
        // The journal is the gateways': a worker alone persists nothing.
        var journal = settings.Roles.Gateway ? PostgresJournal.Claim(settings) : null;
        CapDeviceAllocator(settings);
        if (settings.ServesSeveralModels) return StartSeveral(settings, akkaOverlay, probe, journal);
        NodeModel? model;
        CompletionFactory factory;
        try
        {
            model = settings.Roles.Worker ? NodeModel.Load(settings) : null;
            // A gateway alone validates requests against the model's config and tokenizer, and loads no weights.
            factory = model?.Factory ?? new CompletionFactory(ModelConfigs.Resolve(settings.Model), ModelFiles.OpenCodec(settings.Model));
        }
        catch
        {
            journal?.Dispose();
            throw;
        }
        ActorSystem? system = null;
        try
        {
            system = ActorSystem.Create("actorinfer", SystemConfig(settings, akkaOverlay));
            ClusterMembership.Join(system, settings);
            if (model is null) return StartGateway(settings, factory, system, journal);
            var log = Logging.GetLogger(system, "planner");
            if (model.PinnedAtStart is { } pinned)
                log.Info("CPU tier: {0} made at start (pin-cpu-budget) in {1:F2} s", Planning.ByteSize.Format(pinned.Bytes), pinned.Seconds);
            LogAllocatorCap(log, settings);
            var (parts, placement) = Parts(settings, model, probe, line => log.Info(line));
            var actors = NodeActors.Start(system, parts);
            var computeTier = parts.ComputeTier;
            var (memory, planner, scheduler) = (actors.Memory, actors.Planner, actors.Scheduler);
            var largest = LargestBlock(placement, settings);
            WarmUp.Run(system, scheduler, settings.ServedModels[0].Name, settings.WarmUp, model.Factory.Config);
            if (!settings.Roles.Gateway)
            {
                system.ActorOf(WorkerProtocol.EndpointProps(scheduler, 2 * settings.Scheduler.MaxGpuBatchSize * settings.Scheduler.MaxGpuBatches,
                    NodeModel.DeviceName(settings)), WorkerProtocol.EndpointName);
                return new ActorInferNode(settings, model, factory, system, memory, planner, scheduler, ActorRefs.Nobody, ActorRefs.Nobody)
                {
                    Models = [new ServedModel(settings.ServedModels[0], factory, memory, planner, scheduler, actors.Tiers, placement, largest)],
                    ComputeTier = computeTier,
                    LargestBlockBytes = largest,
                    PolicyPlanner = placement,
                    TierActors = actors.Tiers,
                };
            }
            var jobs = system.ActorOf(JobProtocol.Props("actorinfer-jobs", scheduler, settings.ResultsDir, settings.Persistence.SnapshotEvery,
                JobProtocol.Retention.Of(settings.Jobs.Retention)), "jobs");
            var control = system.ActorOf(ControlProtocol.Props(ControlProtocol.Settings.From(settings), jobs, memory, model.Factory), "control");
            return new ActorInferNode(settings, model, factory, system, memory, planner, scheduler, jobs, control)
            {
                Models = [new ServedModel(settings.ServedModels[0], factory, memory, planner, scheduler, actors.Tiers, placement, largest)],
                ComputeTier = computeTier,
                LargestBlockBytes = largest,
                PolicyPlanner = placement,
                TierActors = actors.Tiers,
                _journal = journal,
            };
        }
        catch
        {
            system?.Terminate().Wait(TimeSpan.FromSeconds(10));
            model?.Dispose();
            journal?.Dispose();
            throw;
        }
    }

    /// <summary>A gateway alone: the job actor enqueues on a work dispatcher, which hands the work to the cluster's workers.</summary>
    private static ActorInferNode StartGateway(ActorInferSettings settings, CompletionFactory factory, ActorSystem system, PostgresJournal? journal)
    {
        var dispatcher = system.ActorOf(WorkerProtocol.DispatcherProps(), "dispatcher");
        var jobs = system.ActorOf(JobProtocol.Props("actorinfer-jobs", dispatcher, settings.ResultsDir, settings.Persistence.SnapshotEvery,
            JobProtocol.Retention.Of(settings.Jobs.Retention)), "jobs");
        var control = system.ActorOf(ControlProtocol.Props(ControlProtocol.Settings.From(settings), jobs, ActorRefs.Nobody, factory), "control");
        return new ActorInferNode(settings, null, factory, system, ActorRefs.Nobody, ActorRefs.Nobody, dispatcher, jobs, control)
        {
            Models = [new ServedModel(settings.ServedModels[0], factory, ActorRefs.Nobody, ActorRefs.Nobody, dispatcher, [], null, 0)],
            ComputeTier = settings.IsCuda ? Tier.Gpu : Tier.Cpu,
            Dispatcher = dispatcher,
            _journal = journal,
        };
    }

    /// <summary>
    /// What a node's deciding and running actors are built from, given its settings and loaded model: the hardware
    /// profile (measured on a GPU node's first start), the workload planner, the budgets and telemetry. `generate
    /// --config` builds the same parts, so its decisions are the served node's.
    /// </summary>
    public static (NodeParts Parts, WorkloadPlanner Planner) Parts(ActorInferSettings settings, NodeModel model, IMemoryProbe? probe, Action<string> log)
    {
        var computeTier = settings.IsCuda ? Tier.Gpu : Tier.Cpu;
        var hardware = NodeHardware.Resolve(settings, log,
            new Runtime.Profiling.AttentionShape(model.Config.HiddenSize, model.Config.NumAttentionHeads));
        var placement = model.Planner(settings, hardware, computeTier);
        log($"planner: hardware profile {hardware.Profile.Name} ({hardware.Source}); " +
            (settings.Planner.WholeContext ? "every block planned for the whole context" : "blocks planned for the queued requests' lengths"));
        var parts = new NodeParts(model.Engine, model.Factory, model.Tiers, computeTier, CpuTierActor: settings.IsCuda,
            placement, placement.Buckets, NodeMemorySettings(settings),
            probe ?? new HostMemoryProbe(settings.DataDir, DeviceTelemetry(settings, model), ownHostBytes: OwnHostBytes(settings, model)),
            settings.Scheduler.MaxWaitForMemory) { HeadroomHistory = settings.Planner.HeadroomHistory };
        return (parts, placement);
    }

    /// <summary>
    /// On CUDA, the device memory this node could use: what the driver reports free plus what the node's own
    /// device tier already holds (its own buffers are not pressure) and its CUDA context (a budget counts it, as an
    /// operator's does).
    /// </summary>
    private static Func<long?>? DeviceTelemetry(ActorInferSettings settings, NodeModel model) =>
        settings.IsCuda ? () => Runtime.Tiers.MachineMemory.Device().Free + model.Tiers.Device.BytesHeld + model.DeviceContextBytes : null;

    /// <summary>Host memory the node's tiers hold (the device tier too on a CPU node).</summary>
    private static Func<long> OwnHostBytes(ActorInferSettings settings, NodeModel model) =>
        () => model.Tiers.Cpu.BytesTaken + (settings.IsCuda ? 0 : model.Tiers.Device.BytesHeld);

    public async ValueTask DisposeAsync()
    {
        await CoordinatedShutdown.Get(System).Run(CoordinatedShutdown.ClrExitReason.Instance);
        await System.WhenTerminated;
        _model?.Dispose();
        foreach (var other in _otherModels) other.Dispose();
        _journal?.Dispose();
        _folderLock?.Dispose();
    }
}
