using ActorInfer.Actors.Node;
using System.CommandLine;
using ActorInfer.Planning;

namespace ActorInfer.Cli.Running;

/// <summary>The placement options `generate` and `bench` share, as FlexGen spells them.</summary>
public sealed class PolicyOptions
{
    public Option<string?> Policy { get; } = new("--policy") { Description = "auto: search the best policy for the memory budgets with the planner." };
    public Option<double[]> Percent { get; } = new("--percent")
    {
        Description = "Six percentages: weights on GPU, weights on CPU, cache on GPU, cache on CPU, activations on GPU, activations on CPU (the rest of each goes to disk).",
        AllowMultipleArgumentsPerToken = true,
        Arity = new ArgumentArity(6, 6),
    };
    public Option<int?> GpuBatchSize { get; } = new("--gpu-batch-size") { Description = "Sequences per GPU batch." };
    public Option<int?> NumGpuBatches { get; } = new("--num-gpu-batches") { Description = "GPU batches per block (the zig-zag block size)." };
    public Option<string> CpuAttention { get; } = CpuAttentionOption.Create();
    public Option<bool> CompressCache { get; } = new("--compress-cache") { Description = "Keep the KV cache 4-bit group-quantized (FlexGen's compression; outputs differ from an uncompressed run)." };
    public Option<bool> CompressWeight { get; } = new("--compress-weight") { Description = "Store the weights 4-bit group-quantized in every tier, expanded on the device a layer at a time (FlexGen's compression; outputs differ from an uncompressed run)." };
    public Option<string> WeightPlacement { get; } = WeightPlacementOption.Create();
    public Option<string?> DiskDir { get; } = new("--disk-dir") { Description = "Folder of the disk tier." };
    public Option<string?> GpuMem { get; } = new("--gpu-mem") { Description = "Device tier budget (e.g. 16GiB); default: the device's total memory." };
    public Option<string?> CpuMem { get; } = new("--cpu-mem") { Description = "CPU tier budget; default: the host's available memory." };
    public Option<string?> DiskMem { get; } = new("--disk-mem") { Description = "Disk tier budget; default: free space in --disk-dir." };
    public Option<string?> Hardware { get; } = new("--hardware") { Description = "Hardware profile for --policy auto (a file written by `actorinfer profile`, or t4-flexgen)." };
    public Option<string> EngineMode { get; } = CreateEngineMode();
    public Option<string> DecodeAttention { get; } = CreateDecodeAttention();
    public Option<bool> BatchInvariant { get; } = new("--batch-invariant") { Description = "Make each sequence's tokens depend on its own request alone: not on its block, padding, GPU batch size or where attention runs (products in calls of fixed row counts, prompts attended apart from their padding, one order of operations for decoding attention on GPU and CPU, requeued sequences regenerate). Greedy outputs under pressure are then those of an unpressured run." };

    public Option<bool> CudaGraphs { get; } = new("--cuda-graphs") { Description = "Run each decoding layer that reads its device cache in place as captured CUDA graphs instead of a dozen kernel launches (a block's second decoding step captures, later ones replay). With our fused kernel (the default) one graph a layer serves every step of a block, with batched products one per attended length (a multiple of 8); either way the outputs are those of a run without; with --decode-attention efficient the whole layer is one graph, always masked, and outputs may differ in the last bits." };

    private static Option<string> CreateDecodeAttention()
    {
        var option = new Option<string>("--decode-attention")
        {
            Description = "Decoding attention on CUDA: fused (default: our kernel, one pass over the cache split over its length, in single precision, no per-shape planning; float16 and bfloat16 with head sizes 16 to 256 and up to 8 query heads per key/value head, else products), products (two batched matrix products, no per-shape planning), cudnn (cuDNN's fused kernel: faster per call, but it plans each new batch size and cache length on the tensor thread for 50 ms to 1 s) or efficient (libtorch's memory-efficient fused kernel: one kernel, no per-shape planning).",
            DefaultValueFactory = _ => "fused",
        };
        option.OneOf(Model.Layers.DecodeAttentionNames.All);
        return option;
    }

    private static Option<string> CreateEngineMode()
    {
        var option = new Option<string>("--engine")
        {
            Description = "actors: the layer and scheduler actors drive the runtime, as in a node (default); direct: the runtime's own loop; compare (bench): both, alternating in one process.",
            DefaultValueFactory = _ => "actors",
        };
        option.OneOf("actors", "direct", "compare");
        return option;
    }

    public IEnumerable<Option> All() => [Policy, Percent, GpuBatchSize, NumGpuBatches, CpuAttention, CompressCache, CompressWeight, WeightPlacement, DiskDir, GpuMem, CpuMem, DiskMem, Hardware, EngineMode, DecodeAttention, BatchInvariant, CudaGraphs];

    public PolicyChoice Read(ParseResult parse)
    {
        var policy = parse.GetValue(Policy);
        if (policy is not null && policy != "auto") throw new CliException($"--policy takes only 'auto' (got '{policy}')", 2);
        var percent = parse.GetValue(Percent) is { Length: > 0 } given ? given : null;
        if (policy == "auto" && percent is not null) throw new CliException("--policy auto and --percent exclude each other", 2);
        if (policy != "auto" && parse.GetValue(CpuAttention) == "auto")
            throw new CliException("--cpu-attention auto needs --policy auto (the planner tries both); give on or off with a fixed policy", 2);
        return new PolicyChoice(
            Auto: policy == "auto",
            Percent: percent,
            GpuBatchSize: parse.GetValue(GpuBatchSize),
            NumGpuBatches: parse.GetValue(NumGpuBatches),
            CpuAttention: CpuAttentionOption.Read(parse.GetValue(CpuAttention)!),
            DiskDir: parse.GetValue(DiskDir),
            GpuMem: Size(parse.GetValue(GpuMem), "--gpu-mem"),
            CpuMem: Size(parse.GetValue(CpuMem), "--cpu-mem"),
            DiskMem: Size(parse.GetValue(DiskMem), "--disk-mem"),
            Hardware: parse.GetValue(Hardware),
            ThroughActors: parse.GetValue(EngineMode) != "direct",
            Compare: parse.GetValue(EngineMode) == "compare",
            CompressCache: parse.GetValue(CompressCache),
            DecodeAttention: Model.Layers.DecodeAttentionNames.Parse(parse.GetValue(DecodeAttention)!),
            CompressWeights: parse.GetValue(CompressWeight),
            BatchInvariant: parse.GetValue(BatchInvariant),
            CudaGraphs: parse.GetValue(CudaGraphs),
            SpreadWeights: WeightPlacementOption.Spread(parse.GetValue(WeightPlacement)!));
    }

    private static long? Size(string? text, string option)
    {
        if (text is null) return null;
        if (!ByteSize.TryParse(text, out var bytes, out var problem)) throw new CliException($"{option}: {problem}", 2);
        if (bytes <= 0) throw new CliException($"{option} must be positive (got {text})", 2);
        return bytes;
    }
}
