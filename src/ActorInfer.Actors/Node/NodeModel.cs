using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Engine;
using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Tokenization;
using ActorInfer.Model.Weights;
using static TorchSharp.torch;

namespace ActorInfer.Actors.Node;

/// <summary>The model a node serves: its shape, its tokenizer (when the checkpoint has one) and its engine.</summary>
public sealed class NodeModel : IDisposable
{
    private readonly IDisposable[] _owned;

    private NodeModel(ModelConfig config, ITextCodec? codec, IInferenceEngine engine, ScalarType dtype,
        ActorInfer.Runtime.Schedule.OffloadRuntime runtime, IDisposable[] owned)
    {
        _owned = owned;
        Runtime = runtime;
        Tiers = runtime.Tiers;
        Config = config;
        Codec = codec;
        Engine = engine;
        DType = dtype;
        Factory = new CompletionFactory(config, codec);
    }

    public ModelConfig Config { get; }
    public ITextCodec? Codec { get; }
    public IInferenceEngine Engine { get; }
    public CompletionFactory Factory { get; }
    public ScalarType DType { get; }

    /// <summary>The runtime's tiers, each owned by an offload-tier actor on the node.</summary>
    public ActorInfer.Runtime.Tiers.TierSet Tiers { get; }
    public int BytesPerElement => DType == ScalarType.Float32 ? 4 : 2;

    /// <summary>The offloading runtime behind the engine.</summary>
    public ActorInfer.Runtime.Schedule.OffloadRuntime Runtime { get; }

    /// <summary>On a GPU node, the device memory in use before the model was loaded (the CUDA context); 0 on the CPU.</summary>
    public long DeviceContextBytes { get; private init; }

    /// <summary>On a GPU node, the device's memory; 0 on the CPU.</summary>
    public long DeviceTotalBytes { get; private init; }

    /// <summary>The CPU budget's memory made at start (<c>memory.pin-cpu-budget</c>) and the seconds it took; null without.</summary>
    public (long Bytes, double Seconds)? PinnedAtStart { get; private init; }

    /// <summary>
    /// The node's planner: the full policy search for each workload bucket and set of budgets, corrected to this
    /// runtime's placement, within the scheduler's geometry bounds.
    /// </summary>
    public Planner.WorkloadPlanner Planner(ActorInferSettings settings, Planner.NodeHardware hardware, Memory.Tier computeTier)
    {
        return new Planner.WorkloadPlanner(Runtime, hardware.Profile, hardware.Source, settings.Planner,
            settings.Scheduler.MaxGpuBatchSize, settings.Scheduler.MaxGpuBatches, computeTier, DeviceContextBytes, DeviceTotalBytes);
    }

    /// <summary>Why the configured model cannot be served, or null when it can (checked before anything starts).</summary>
    public static string? Problem(string model)
    {
        if (Directory.Exists(model))
            return File.Exists(Path.Combine(model, "config.json")) ? null : $"the model directory '{model}' holds no config.json";
        if (model.Contains('/') || model.Contains('\\'))
            return $"the model directory '{model}' does not exist";
        return ModelConfigs.IsNamedSize(model)
            ? null
            : $"'{model}' is neither a model directory nor a known model size ({string.Join(", ", ModelConfigs.NamedSizes)})";
    }

    /// <summary>
    /// The device a node computes on, as it reports it: the setting, and on CUDA which of the host's GPUs the process sees
    /// when CUDA_VISIBLE_DEVICES says (one node per GPU).
    /// </summary>
    public static string DeviceName(ActorInferSettings settings) =>
        settings.IsCuda && Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES") is { Length: > 0 } visible
            ? $"{settings.Device} (CUDA_VISIBLE_DEVICES={visible})"
            : settings.Device;

    public static NodeModel Load(ActorInferSettings settings) => Load(settings, deviceBefore: null);

    /// <summary>
    /// Where a node's weights are loaded on a GPU: all on the device when they fit within its GPU budget (the device's
    /// memory where none is set) less the CUDA context, what models loaded before hold there, and a tenth of the budget
    /// for the first block's work; else all in host memory. The first policy then moves them where it places them, so the
    /// device never holds more than the budget, even for a model larger than the device.
    /// </summary>
    /// <param name="weightBytes">The model's weights as the device would hold them.</param>
    /// <param name="budget">The node's GPU budget, or the device's memory where none is set.</param>
    /// <param name="context">What the device held before any model (the CUDA context).</param>
    /// <param name="taken">What models loaded before this one hold on the device.</param>
    public static Planning.TierFractions StartWeights(long weightBytes, long budget, long context, long taken) =>
        weightBytes <= budget - budget / 10 - context - taken ? Planning.TierFractions.AllGpu : Planning.TierFractions.AllCpu;

    /// <param name="deviceBefore">
    /// The device's free and total memory before the node loaded anything (several models on one device: what the first
    /// one found, so that a later model does not count the earlier ones' weights as its CUDA context); null: read now.
    /// </param>
    /// <param name="deviceTaken">What models loaded before this one hold on the device (several models on one device).</param>
    public static NodeModel Load(ActorInferSettings settings, (long Free, long Total)? deviceBefore, long deviceTaken = 0)
    {
        // The runtime computes on the process's current GPU, the first it sees: another index would be ignored, not honoured.
        if (settings.IsCuda && settings.Device is not ("cuda" or "cuda:0"))
            throw new SettingsException("actorinfer.device",
                $"'{settings.Device}': a node computes on the first GPU its process sees; give it GPU {settings.Device[5..]} with " +
                $"CUDA_VISIBLE_DEVICES={settings.Device[5..]} and device = \"cuda\" (scripts/cluster-up --gpus does so for each worker)");
        if (settings.IsCuda && !cuda.is_available())
            throw new SettingsException("actorinfer.device", $"'{DeviceName(settings)}' was asked for, but CUDA is not available on this machine");
        var dtype = settings.DType switch
        {
            "float16" => ScalarType.Float16,
            "bfloat16" => ScalarType.BFloat16,
            _ => ScalarType.Float32,
        };
        var config = ModelConfigs.Resolve(settings.Model);
        var isDir = Directory.Exists(settings.Model);
        var codec = ModelFiles.OpenCodec(settings.Model);
        using IWeightSource source = isDir ? ModelFiles.OpenCheckpoint(settings.Model, config) : new DummyWeightSource(config, settings.WeightsSeed);
        var factory = new CompletionFactory(config, codec);
        // The node drives the same offloading runtime as `generate` and `bench`, with everything on the compute
        // device; the scheduler picks each block's geometry from the memory budgets.
        var policy = new Planning.Policy(1, 1, Planning.TierFractions.AllGpu, Planning.TierFractions.AllGpu, Planning.TierFractions.AllGpu);
        var tiers = ActorInfer.Runtime.Tiers.TierSet.Create(long.MaxValue / 4, long.MaxValue / 4, null, 0);
        // The CPU budget's memory made now, before the weights, where the setting asks (a budget in bytes: checked when read),
        // and where the host has it: a budget past the host's available memory would be paged out or killed, not pinned.
        (long Bytes, double Seconds)? pinned = null;
        if (settings.Memory is { PinCpuBudget: true, CpuBudget: { } pin })
        {
            var available = ActorInfer.Runtime.Tiers.MachineMemory.HostAvailable();
            if (pin > available)
                throw new SettingsException("actorinfer.memory.pin-cpu-budget",
                    $"the cpu-budget ({Planning.ByteSize.Format(pin)}) is more than the host's available memory " +
                    $"({Planning.ByteSize.Format(available)}): lower it or turn pin-cpu-budget off");
            pinned = (pin, tiers.Cpu.PinAtStart(pin, dtype));
        }
        // What the device holds before the model: a GPU budget bounds what the device reports, this included.
        var (deviceFree, deviceTotal) = settings.IsCuda ? deviceBefore ?? ActorInfer.Runtime.Tiers.MachineMemory.Device() : (0L, 0L);
        ActorInfer.Runtime.Copies.ICopyEngine copies = settings.IsCuda ? new ActorInfer.Runtime.Copies.CudaCopyEngine() : new ActorInfer.Runtime.Copies.CpuCopyEngine();
        try
        {
            // On CUDA, weights may have to leave the device under pressure (on a CPU node they never leave host memory), and
            // are loaded where the GPU budget lets them.
            Func<long, Planning.TierFractions?>? start = settings.IsCuda
                ? weightBytes => StartWeights(weightBytes, settings.Memory.GpuBudget ?? deviceTotal, deviceTotal - deviceFree, deviceTaken)
                : null;
            var runtime = ActorInfer.Runtime.Schedule.OffloadRuntime.Create(config, source, policy, tiers, copies, dtype, elastic: settings.IsCuda,
                settings.Memory.CpuBudget ?? ActorInfer.Runtime.Tiers.MachineMemory.HostAvailable(), settings.DecodeAttention, start,
                settings.BatchInvariant, settings.CudaGraphs);
            var engine = new OffloadedEngine(runtime, factory.Decode, settings.IsCuda ? Memory.Tier.Gpu : Memory.Tier.Cpu);
            return new NodeModel(config, codec, engine, dtype, runtime, [runtime, copies])
            {
                DeviceContextBytes = deviceTotal - deviceFree, DeviceTotalBytes = deviceTotal, PinnedAtStart = pinned,
            };
        }
        catch
        {
            copies.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        Engine.Dispose();
        foreach (var o in _owned) o.Dispose();
    }
}
