using ActorInfer.Actors.Planner;
using ActorInfer.Cli.Planning;
using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Cli.Engine;

/// <summary>
/// Everything one run needs, built from the command line: the model's config and weights, the tiers with their
/// budgets, the copy engine for the device, the policy (given or searched) and the offloading engine.
/// </summary>
public sealed class EngineSetup : IDisposable
{
    private EngineSetup(ModelConfig config, TierSet tiers, ICopyEngine copies, OffloadEngine engine, SearchResult? search, TimeSpan loadTime)
    {
        ThroughActors = true;
        Config = config;
        Tiers = tiers;
        Copies = copies;
        Engine = engine;
        Search = search;
        LoadTime = loadTime;
    }

    public ModelConfig Config { get; }
    public TierSet Tiers { get; }
    public ICopyEngine Copies { get; }
    public OffloadEngine Engine { get; }
    public Policy Policy => Engine.Policy;
    /// <summary>The planner's answer when the policy was searched (with its predicted figures).</summary>
    public SearchResult? Search { get; }
    public TimeSpan LoadTime { get; }
    /// <summary>What the GPU budget leaves aside for the CUDA context and the allocator (none on the CPU).</summary>
    public DeviceReserve Reserve { get; private init; } = DeviceReserve.None;

    /// <summary>The hardware profile given with --hardware (the planner's machine), if any.</summary>
    public HardwareProfile? Hardware { get; private init; }

    /// <summary>Whether blocks run through the actors (the default) or the runtime's own loop.</summary>
    public bool ThroughActors { get; set; }

    /// <summary>Runs blocks through the layer and scheduler actors (created on first use) instead of calling the runtime directly.</summary>
    public ActorInfer.Actors.Engine.ActorDriver Actors(ActorInfer.Model.Generation.CompletionFactory factory, out ActorInfer.Actors.Engine.OffloadedEngine engine)
    {
        if (_actors is null)
        {
            _offloaded = new ActorInfer.Actors.Engine.OffloadedEngine(Engine, factory.Decode);
            _actors = ActorInfer.Actors.Engine.ActorDriver.Start(_offloaded, factory,
                new ActorInfer.Actors.Planner.BlockPolicy(Policy.GpuBatchSize, Policy.NumGpuBatches, Policy.ToString()));
        }
        engine = _offloaded!;
        return _actors;
    }

    /// <summary>A new block policy for the actor-driven runs (the pressure replay's).</summary>
    public void SetPolicy(ActorInfer.Actors.Planner.BlockPolicy? policy, ActorInfer.Actors.Memory.TierBudgets? budgets = null, long? changedAt = null,
        long? plannedAt = null) =>
        (_actors ?? throw new InvalidOperationException("the actors are not running")).SetPolicy(policy, budgets, changedAt, plannedAt);

    /// <summary>Weight bytes the actor-driven runs moved between tiers when policies changed.</summary>
    public long WeightBytesMoved => _offloaded?.WeightBytesMoved ?? 0;

    /// <summary>The actor driver, once blocks have run (or been prepared to run) through the actors.</summary>
    public ActorInfer.Actors.Engine.ActorDriver? Driver => _actors;

    private ActorInfer.Actors.Engine.ActorDriver? _actors;
    private ActorInfer.Actors.Engine.OffloadedEngine? _offloaded;
    public Device Device => Tiers.Device.Device;

    /// <param name="defaultGpuBatchSize">The GPU batch size when neither --gpu-batch-size nor the planner gives one.</param>
    /// <param name="elastic">The run replays a pressure schedule: device-resident weights keep CPU copies, so that they leave the device at once.</param>
    public static EngineSetup Create(ModelConfig config, IWeightSource source, Device device, ScalarType dtype, PolicyChoice choice,
        Workload workload, int defaultGpuBatchSize, bool elastic = false)
    {
        var isCuda = device.type == TorchSharp.DeviceType.CUDA;
        ActorInfer.Model.Layers.CudaAttentionBackends.Decode = choice.DecodeAttention;
        var hostAvailable = MachineMemory.HostAvailable();
        var gpuBudget = choice.GpuMem ?? (isCuda ? MachineMemory.Device().Total : hostAvailable / 2);
        // On CUDA the budget bounds what the device reports for the job: the context and the allocator's slack come off it.
        var reserve = isCuda ? DeviceReserve.Measure(gpuBudget) : DeviceReserve.None;
        long usableGpu;
        try
        {
            usableGpu = reserve.Usable(gpuBudget);
        }
        catch (TierBudgetExceededException ex)
        {
            throw new CliException($"--gpu-mem: {ex.Message}");
        }
        var cpuBudget = choice.CpuMem ?? hostAvailable;
        var diskDir = choice.DiskDir;
        // As FlexGen does with its offload folder: a missing one is made.
        if (diskDir is not null) Directory.CreateDirectory(diskDir);
        var diskBudget = choice.DiskMem ?? (diskDir is null ? 0 : MachineMemory.DiskFree(diskDir));

        SearchResult? search = null;
        Policy policy;
        if (choice.Auto)
        {
            if (choice.Hardware is null)
                throw new CliException("--policy auto needs --hardware: a profile written by `actorinfer profile` (or t4-flexgen)", 2);
            var hardware = HardwareProfiles.Resolve(choice.Hardware);
            var spec = ModelSpecMapper.From(config, (int)MemoryTier.ElementSize(dtype));
            // A compressed cache is attended on the GPU, as FlexGen does: the cost model does not price expanding it on the CPU.
            var options = new SearchOptions
            {
                GpuBatchSize = choice.GpuBatchSize, NumGpuBatches = choice.NumGpuBatches,
                CompressCache = choice.CompressCache, CpuAttention = choice.CompressCache ? false : choice.CpuAttention,
            };
            search = SearchThatFits(config, source, dtype, isCuda, spec, workload, hardware, options,
                new TierBudget(usableGpu, cpuBudget, diskDir is null ? 1 : diskBudget));
            policy = search.Policy;
        }
        else
        {
            var p = choice.Percent ?? [100, 0, 100, 0, 100, 0];
            try
            {
                policy = new Policy(choice.GpuBatchSize ?? defaultGpuBatchSize, choice.NumGpuBatches ?? 1,
                    TierFractions.FromPercent(p[0], p[1]), TierFractions.FromPercent(p[2], p[3]), TierFractions.FromPercent(p[4], p[5]))
                { CpuAttention = choice.CpuAttention ?? true, CompressCache = choice.CompressCache };
            }
            catch (ArgumentException ex)
            {
                throw new CliException($"--percent: {ex.Message}", 2);
            }
        }
        if ((policy.Weights.Disk > 0 || policy.Cache.Disk > 0 || policy.Activations.Disk > 0) && diskDir is null)
            throw new CliException("the policy places tensors on disk: give --disk-dir");

        var tiers = TierSet.Create(usableGpu, cpuBudget, diskDir, diskBudget);
        ICopyEngine copies = isCuda ? new CudaCopyEngine() : new CpuCopyEngine();
        try
        {
            var watch = System.Diagnostics.Stopwatch.StartNew();
            // Host copies of the device's weights when they take at most half of the CPU budget.
            var deviceWeights = OffloadEngine.PlanFor(config, source, policy, dtype, !isCuda, 1, 1).Weights.Device;
            var engine = new OffloadEngine(config, source, policy, tiers, copies, dtype, keepHostCopies: elastic && deviceWeights <= cpuBudget / 2);
            return new EngineSetup(config, tiers, copies, engine, search, watch.Elapsed)
            {
                ThroughActors = choice.ThroughActors,
                Reserve = reserve,
                Hardware = choice.Hardware is null ? null : HardwareProfiles.Resolve(choice.Hardware),
            };
        }
        catch (TierBudgetExceededException ex)
        {
            copies.Dispose();
            throw new CliException(ex.Message);
        }
        catch
        {
            copies.Dispose();
            throw;
        }
    }

    private sealed record TierBudget(long Gpu, long Cpu, long Disk);

    private static SearchResult SearchThatFits(ModelConfig config, IWeightSource source, ScalarType dtype, bool isCuda, ModelSpec spec,
        Workload workload, HardwareProfile hardware, SearchOptions options, TierBudget budget)
    {
        try
        {
            return FittingSearch.Find(spec, workload, hardware, options, new FittingSearch.Budget(budget.Gpu, budget.Cpu, budget.Disk),
                policy => OffloadEngine.PlanFor(config, source, policy, dtype, !isCuda, workload.PromptLength, workload.GenerationLength).Total);
        }
        catch (NoFeasiblePolicyException ex)
        {
            throw new CliException(ex.Message, 3);
        }
        catch (PlacementDoesNotFitException ex)
        {
            throw new CliException(ex.Message, 3);
        }
    }

    public void Dispose()
    {
        _actors?.Dispose();
        _offloaded?.Dispose();
        Engine.Dispose();
        Copies.Dispose();
    }
}
