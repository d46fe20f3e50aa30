using ActorInfer.Actors.Planner;
using System.CommandLine;
using System.Globalization;
using ActorInfer.Cli.Planning;
using ActorInfer.Planning;

namespace ActorInfer.Cli.Commands;

/// <summary>`actorinfer plan`: searches (or evaluates) an offloading policy and prints its predicted figures.</summary>
public static class PlanCommand
{
    public static Command Create(TextWriter? output = null)
    {
        var model = new Option<string>("--model") { Description = "An OPT name (opt-125m .. opt-175b) or a directory with a Hugging Face config.json", Required = true };
        var promptLength = new Option<int>("--prompt-len") { Description = "Prompt length in tokens", Required = true };
        var generationLength = new Option<int>("--gen-len") { Description = "Tokens to generate per sequence", Required = true };
        var gpuMemory = new Option<string?>("--gpu-mem") { Description = "GPU memory, e.g. 16GB (1e9) or 15GiB (2^30); default: the profile's" };
        var cpuMemory = new Option<string?>("--cpu-mem") { Description = "CPU memory, e.g. 208GB; default: the profile's" };
        var diskMemory = new Option<string?>("--disk-mem") { Description = "Disk space, e.g. 1.5TB; default: the profile's" };
        var hardware = new Option<string>("--hardware") { Description = "A built-in profile (t4-flexgen) or a profile JSON file", DefaultValueFactory = _ => "t4-flexgen" };
        var percent = new Option<double[]?>("--percent")
        {
            Description = "Fix the placement: weights GPU% CPU%, cache GPU% CPU%, activations GPU% CPU% (disk takes the rest)",
            AllowMultipleArgumentsPerToken = true,
        };
        var gpuBatchSize = new Option<int?>("--gpu-batch-size") { Description = "Fix the GPU batch size" };
        var numGpuBatches = new Option<int?>("--num-gpu-batches") { Description = "Fix the number of GPU batches in a block" };
        var attention = CpuAttentionOption.Create();
        var compressWeights = new Option<bool>("--compress-weight") { Description = "Store weights 4-bit group-quantized" };
        var compressCache = new Option<bool>("--compress-cache") { Description = "Store the KV cache 4-bit group-quantized" };
        var weightPlacement = WeightPlacementOption.Create();
        var gpuHeadroom = new Option<double>("--gpu-headroom") { Description = "Usable share of GPU memory (FlexGen's alpha)", DefaultValueFactory = _ => 1.0 };
        var cpuHeadroom = new Option<double>("--cpu-headroom") { Description = "Usable share of CPU memory", DefaultValueFactory = _ => 1.0 };
        var diskHeadroom = new Option<double>("--disk-headroom") { Description = "Usable share of disk", DefaultValueFactory = _ => 1.0 };
        var maxBlock = new Option<int>("--max-block-size") { Description = "Largest block (batch size x GPU batches) the search considers", DefaultValueFactory = _ => SearchOptions.Default.MaxBlockSize };
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };

        var command = new Command("plan", "Find the offloading policy with the best predicted throughput (or evaluate a given one).");
        foreach (var option in new Option[] { model, promptLength, generationLength, gpuMemory, cpuMemory, diskMemory, hardware, percent, gpuBatchSize, numGpuBatches, attention, compressWeights, compressCache, weightPlacement, gpuHeadroom, cpuHeadroom, diskHeadroom, maxBlock, json })
            command.Options.Add(option);

        command.SetAction(parse =>
        {
            var writer = output ?? Console.Out;
            var spec = ModelSpecMapper.Resolve(parse.GetValue(model)!);
            var workload = Guard(() => new Workload(parse.GetValue(promptLength), parse.GetValue(generationLength)));
            var profile = Guard(() => HardwareProfiles.Resolve(parse.GetValue(hardware)!));
            var budget = Guard(() => new MemoryBudget(
                Size(parse.GetValue(gpuMemory), "--gpu-mem", profile.GpuMemoryBytes),
                Size(parse.GetValue(cpuMemory), "--cpu-mem", profile.CpuMemoryBytes),
                Size(parse.GetValue(diskMemory), "--disk-mem", profile.DiskBytes))
            {
                GpuHeadroom = Headroom(parse.GetValue(gpuHeadroom), "--gpu-headroom"),
                CpuHeadroom = Headroom(parse.GetValue(cpuHeadroom), "--cpu-headroom"),
                DiskHeadroom = Headroom(parse.GetValue(diskHeadroom), "--disk-headroom"),
            });
            var options = new SearchOptions
            {
                GpuBatchSize = parse.GetValue(gpuBatchSize),
                NumGpuBatches = parse.GetValue(numGpuBatches),
                CpuAttention = CpuAttentionOption.Read(parse.GetValue(attention)!),
                CompressWeights = parse.GetValue(compressWeights),
                CompressCache = parse.GetValue(compressCache),
                SpreadWeights = WeightPlacementOption.Spread(parse.GetValue(weightPlacement)!),
                MaxBlockSize = parse.GetValue(maxBlock),
            };
            if (parse.GetValue(percent) is { Length: > 0 } given)
            {
                if (given.Length != 6)
                    throw new CliException($"--percent takes 6 numbers (weights, cache, activations: GPU% CPU% each), got {given.Length}");
                options = Guard(() => options.WithPercent(given[0], given[1], given[2], given[3], given[4], given[5]));
            }
            Guard(() => { options.Validate(); return 0; });

            PlanReport report;
            try
            {
                report = PlanReport.Create(spec, workload, profile, budget, options);
            }
            catch (NoFeasiblePolicyException ex)
            {
                throw new CliException(ex.Message, exitCode: 3);
            }
            writer.Write(parse.GetValue(json) ? report.ToJson() : report.ToText());
            return 0;
        });
        return command;
    }

    private static long Size(string? text, string option, long fallback) =>
        text is null ? fallback
        : !ByteSize.TryParse(text, out var bytes, out var problem) ? throw new CliException($"{option}: {problem}", 2)
        : bytes > 0 ? bytes : throw new CliException($"{option} must be positive (got {text})", 2);

    private static double Headroom(double value, string option) =>
        value > 0 && double.IsFinite(value) ? value : throw new CliException($"{option} must be a positive factor, got {value.ToString(CultureInfo.InvariantCulture)}");

    private static T Guard<T>(Func<T> build)
    {
        try
        {
            return build();
        }
        catch (ArgumentException ex)
        {
            throw new CliException(ex.Message);
        }
    }
}
