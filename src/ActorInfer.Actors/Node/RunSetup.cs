using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Memory;
using Tier = ActorInfer.Actors.Memory.Tier;
using ActorInfer.Actors.Planner;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Actors.Node;

/// <summary>
/// Everything one `generate` or `bench` run needs, built from its options: the tiers with their budgets, the copy
/// engine for the device, the policy (given or searched), the offloading runtime and the planner of its in-process node.
/// </summary>
public sealed class RunSetup : IDisposable
{
    private RunSetup(ModelConfig config, TierSet tiers, ICopyEngine copies, OffloadRuntime engine, SearchResult? search, TimeSpan loadTime)
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
    public OffloadRuntime Engine { get; }
    public Policy Policy => Engine.Policy;
    /// <summary>The planner's answer when the policy was searched (with its predicted figures).</summary>
    public SearchResult? Search { get; }
    public TimeSpan LoadTime { get; }
    /// <summary>What the GPU budget leaves aside for the CUDA context and the allocator (none on the CPU).</summary>
    public DeviceReserve Reserve { get; private init; } = DeviceReserve.None;

    /// <summary>What libtorch's caching allocator may reserve on the device (the budget less the context and what lies outside the allocator); null: no cap.</summary>
    public long? AllocatorCapBytes { get; private init; }

    /// <summary>
    /// The planner's estimate for the policy run (the search's, or the cost model's for a given policy), whose memory terms
    /// are set beside what the device reports. The memory terms do not depend on the machine's speeds.
    /// </summary>
    public CostEstimate? PredictedEstimate { get; private init; }

    /// <summary>The planner's GPU peak of tensors for the policy run.</summary>
    public double PredictedGpuPeakBytes => PredictedEstimate?.PeakMemory.Gpu ?? 0;

    /// <summary>
    /// The device-reported peak the planner predicts on CUDA (<see cref="DevicePeak.Predicted"/>: the tensors, the
    /// allocator's reserve for the buffers among them, and the CUDA context measured at start); null off the GPU.
    /// </summary>
    public double? PredictedDevicePeakBytes =>
        Reserve.ContextBytes > 0 && PredictedEstimate is { } estimate ? DevicePeak.Predicted(estimate, Reserve.ContextBytes) : null;

    /// <summary>The hardware profile given with --hardware (the planner's machine), if any.</summary>
    public HardwareProfile? Hardware { get; private init; }

    /// <summary>Whether blocks run through the actors (the default) or the runtime's own loop.</summary>
    public bool ThroughActors { get; set; }

    /// <summary>
    /// The in-process node (created on first use) that runs blocks through the same actors a served node runs: the
    /// memory-pressure actor holds the budgets this run was given, the policy-planner actor holds its planner (the
    /// node's workload planner under <c>--policy auto</c>; the given policy otherwise, re-placed by the runtime's
    /// placement planner when a budget falls below it), and the scheduler forms the blocks.
    /// </summary>
    public LocalNode Node(CompletionFactory factory)
    {
        if (_node is not null) return _node;
        _offloaded = new OffloadedEngine(Engine, factory.Decode, ComputeTier);
        _node = LocalNode.Start(new NodeParts(_offloaded, factory, Tiers, ComputeTier, CpuTierActor: ComputeTier == Tier.Gpu, Planner,
            Planner is WorkloadPlanner w ? w.Buckets : null, new MemoryProtocol.Settings(StartBudgets.Gpu, StartBudgets.Cpu, StartBudgets.Disk, TimeSpan.FromDays(1), 0)
            {
                // With the allocator capped at --gpu-mem, a pressure schedule can lower the budget but not raise it past that.
                GpuCeiling = AllocatorCapBytes is null ? null : StartBudgets.Gpu,
            },
            Probe: null, MaxWaitForMemory: null));
        return _node;
    }

    /// <summary>
    /// The policy the node's planner gives a block of requests of these lengths under the starting budgets (the given
    /// policy when one was given).
    /// </summary>
    public BlockPolicy? PlannedFor(int promptLength, int generationLength) => Planner switch
    {
        WorkloadPlanner w => w.Plan(StartBudgets, w.Buckets.For(promptLength, generationLength)),
        FixedPolicyPlanner f => f.Policy,
        _ => Planner.Plan(StartBudgets),
    };

    /// <summary>The planner behind the in-process node's policy-planner actor.</summary>
    public IPolicyPlanner Planner { get; private init; } = null!;

    /// <summary>
    /// The budget governing the runtime's device tier: the GPU's on CUDA; on the CPU, the GPU's for a given policy (the
    /// device tier stands in for a GPU, so that pressure re-places weights as it would there) and host memory's under
    /// <c>--policy auto</c>, as a CPU node plans.
    /// </summary>
    public Tier ComputeTier { get; private init; } = Tier.Gpu;

    /// <summary>The budgets the memory-pressure actor starts with.</summary>
    public TierBudgets StartBudgets { get; private init; } = TierBudgets.None;

    /// <summary>The memory-pressure actor's tier for a schedule's "gpu" or "cpu" event.</summary>
    public Tier TierOf(string name) => name == "gpu" ? ComputeTier : Tier.Cpu;

    /// <summary>Weight bytes the actor-driven runs moved between tiers when policies changed.</summary>
    public long WeightBytesMoved => _offloaded?.WeightBytesMoved ?? 0;

    /// <summary>The engine the node's actors drive, once the node has started.</summary>
    public OffloadedEngine? Offloaded => _offloaded;

    private LocalNode? _node;
    private OffloadedEngine? _offloaded;
    public Device Device => Tiers.Device.Device;

    /// <param name="defaultGpuBatchSize">The GPU batch size when neither --gpu-batch-size nor the planner gives one.</param>
    /// <param name="elastic">The run replays a pressure schedule: device-resident weights keep CPU copies, so that they leave the device at once.</param>
    public static RunSetup Create(ModelConfig config, IWeightSource source, Device device, ScalarType dtype, PolicyChoice choice,
        Workload workload, int defaultGpuBatchSize, bool elastic = false)
    {
        var isCuda = device.type == TorchSharp.DeviceType.CUDA;
        var hostAvailable = MachineMemory.HostAvailable();
        // The device read once, before any tensor reaches it: what is used now is the CUDA context.
        var (deviceFree, deviceTotal) = isCuda ? MachineMemory.Device() : (0L, 0L);
        var gpuBudget = choice.GpuMem ?? (isCuda ? deviceTotal : hostAvailable / 2);
        // On CUDA the budget bounds what the device reports for the job: the context and the allocator's slack come off it.
        var reserve = isCuda ? DeviceReserve.For(gpuBudget, deviceTotal - deviceFree) : DeviceReserve.None;
        // A given budget caps the allocator too: its reserve beyond the tensors then cannot carry the device past the budget.
        var allocatorCap = isCuda && choice.GpuMem is { } given
            ? ActorInfer.Runtime.Cuda.AllocatorSettings.CapDevice(given, reserve.ContextBytes, deviceTotal)
            : null;
        long usableGpu;
        try
        {
            usableGpu = reserve.Usable(gpuBudget);
        }
        catch (TierBudgetExceededException ex)
        {
            throw new RunSetupException($"--gpu-mem: {ex.Message}", RunProblem.DoesNotFit);
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
                throw new RunSetupException("--policy auto needs --hardware: a profile written by `actorinfer profile` (or t4-flexgen)", RunProblem.BadOption);
            var hardware = HardwareProfiles.Resolve(choice.Hardware);
            var spec = ModelSpecMapper.From(config, (int)MemoryTier.ElementSize(dtype));
            // A compressed cache is attended on the GPU, as FlexGen does: the cost model does not price expanding it on the CPU.
            var options = new SearchOptions
            {
                GpuBatchSize = choice.GpuBatchSize, NumGpuBatches = choice.NumGpuBatches,
                CompressCache = choice.CompressCache, CpuAttention = choice.CompressCache ? false : choice.CpuAttention,
                CompressWeights = choice.CompressWeights, SpreadWeights = choice.SpreadWeights,
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
                {
                    CpuAttention = choice.CpuAttention ?? true, CompressCache = choice.CompressCache, CompressWeights = choice.CompressWeights,
                    SpreadWeights = choice.SpreadWeights,
                };
            }
            catch (ArgumentException ex)
            {
                throw new RunSetupException($"--percent: {ex.Message}", RunProblem.BadOption);
            }
        }
        if ((policy.Weights.Disk > 0 || policy.Cache.Disk > 0 || policy.Activations.Disk > 0) && diskDir is null)
            throw new RunSetupException("the policy places tensors on disk: give --disk-dir", RunProblem.DoesNotFit);

        var tiers = TierSet.Create(usableGpu, cpuBudget, diskDir, diskBudget);
        ICopyEngine copies = isCuda ? new CudaCopyEngine() : new CpuCopyEngine();
        try
        {
            var watch = System.Diagnostics.Stopwatch.StartNew();
            var engine = OffloadRuntime.Create(config, source, policy, tiers, copies, dtype, elastic, cpuBudget, choice.DecodeAttention,
                batchInvariant: choice.BatchInvariant, cudaGraphs: choice.CudaGraphs);
            var hardware = choice.Hardware is null ? null : HardwareProfiles.Resolve(choice.Hardware);
            // Under --policy auto the node's planner, as a node on this device plans; a given policy otherwise.
            var computeTier = choice.Auto && !isCuda ? Tier.Cpu : Tier.Gpu;
            IPolicyPlanner planner;
            TierBudgets start;
            if (choice.Auto)
            {
                // The geometry bounds: on CUDA only the search's own block bound, as bench's search has; on the CPU a CPU
                // node's (reference.conf), since there every geometry within the bounds is tried.
                var reference = Configuration.SettingsLoader.Reference;
                planner = new WorkloadPlanner(engine, hardware!, choice.Hardware!, new PlannerSettings(choice.Hardware!, MaxBlockSize: 8192,
                    choice.CompressCache, WholeContext: false, TableStep: 1.02) { SpreadWeights = choice.SpreadWeights },
                    choice.GpuBatchSize ?? (isCuda ? 8192 : reference.GetInt("actorinfer.scheduler.max-gpu-batch-size")),
                    choice.NumGpuBatches ?? (isCuda ? 8192 : reference.GetInt("actorinfer.scheduler.max-gpu-batches")), computeTier,
                    isCuda ? reserve.ContextBytes : 0, deviceTotal);
                start = isCuda ? new TierBudgets(gpuBudget, cpuBudget, diskDir is null ? 0 : diskBudget) : new TierBudgets(0, usableGpu, 0);
            }
            else
            {
                start = new TierBudgets(usableGpu, cpuBudget, diskDir is null ? 0 : diskBudget);
                var block = new BlockPolicy(policy.GpuBatchSize, policy.NumGpuBatches, policy.ToString()) { Runtime = policy };
                planner = new FixedPolicyPlanner(block, start, elastic
                    ? new RuntimePlacementPlanner(engine, policy, workload.PromptLength, workload.PromptLength + workload.GenerationLength, Tier.Gpu, hardware)
                    : null);
            }
            return new RunSetup(config, tiers, copies, engine, search, watch.Elapsed)
            {
                ThroughActors = choice.ThroughActors,
                Reserve = reserve,
                AllocatorCapBytes = allocatorCap,
                Hardware = hardware,
                PredictedEstimate = search?.Estimate ?? CostModel.Evaluate(
                    ModelSpecMapper.From(config, (int)MemoryTier.ElementSize(dtype)), workload, policy,
                    hardware ?? HardwareProfiles.T4FlexGen),
                Planner = planner,
                ComputeTier = computeTier,
                StartBudgets = start,
            };
        }
        catch (TierBudgetExceededException ex)
        {
            copies.Dispose();
            throw new RunSetupException(ex.Message, RunProblem.DoesNotFit);
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
            return FittingSearch.Find(spec, workload, hardware, options, new FittingSearch.Budget(budget.Gpu, budget.Cpu, budget.Disk)
                {
                    // On the device the budget bounds what it reports: the allocator's reserve for the buffers counts too.
                    GpuBufferReserve = isCuda ? DevicePeak.AllocatorReserveShare : 0,
                },
                policy => OffloadRuntime.PlanFor(config, source, policy, dtype, !isCuda, workload.PromptLength, workload.GenerationLength).Total);
        }
        catch (NoFeasiblePolicyException ex)
        {
            throw new RunSetupException(ex.Message, RunProblem.NoPolicy);
        }
        catch (PlacementDoesNotFitException ex)
        {
            throw new RunSetupException(ex.Message, RunProblem.NoPolicy);
        }
    }

    public void Dispose()
    {
        _node?.Dispose();
        _offloaded?.Dispose();
        Engine.Dispose();
        Copies.Dispose();
    }
}

/// <summary>What kept a run from being set up.</summary>
public enum RunProblem
{
    /// <summary>Options that contradict each other or are malformed.</summary>
    BadOption,
    /// <summary>No policy fits the budgets.</summary>
    NoPolicy,
    /// <summary>The placement asked for does not fit a tier.</summary>
    DoesNotFit,
}

/// <summary>A run that cannot be set up as asked; the message names the option or budget at fault.</summary>
public sealed class RunSetupException(string message, RunProblem problem) : Exception(message)
{
    public RunProblem Problem { get; } = problem;
}
