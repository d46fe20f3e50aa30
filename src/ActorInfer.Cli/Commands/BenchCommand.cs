using ActorInfer.Actors.Node;
using System.CommandLine;
using System.Text.Json;
using ActorInfer.Cli.Bench;
using ActorInfer.Cli.Running;
using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;

namespace ActorInfer.Cli.Commands;

/// <summary>`actorinfer bench`: FlexGen's throughput benchmark of one block, under a given or planned policy.</summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var command = new Command("bench", "Measure prefill, decoding and total throughput of one block, as FlexGen reports them.");
        var model = new Option<string>("--model") { Description = "Named size (opt-125m ... opt-175b) or checkpoint folder.", Required = true };
        var dummy = new Option<bool>("--dummy") { Description = "Random weights of the model's shape (no checkpoint)." };
        var promptLen = new Option<int>("--prompt-len") { Description = "Prompt length in tokens.", DefaultValueFactory = _ => 512 };
        var genLen = new Option<int>("--gen-len") { Description = "Tokens generated per sequence.", DefaultValueFactory = _ => 32 };
        var device = new Option<string>("--device") { Description = "cpu or cuda (default: cuda when available)." };
        device.OneOf("cpu", "cuda");
        var dtype = new Option<string?>("--dtype") { Description = "float32, float16 or bfloat16 (default: float16 on cuda, float32 on cpu)." };
        dtype.OneOf("float32", "float16", "bfloat16");
        var repeat = new Option<int>("--repeat") { Description = "Measured runs; the median is reported.", DefaultValueFactory = _ => 3 };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON." };
        var pressure = new Option<FileInfo?>("--pressure") { Description = "Replay a pressure schedule (as for generate) during one measured run, through the actors." };
        var trace = new Option<string?>("--trace") { Description = "Write a timeline (Chrome trace JSON) of one decoding step: copies and compute per stream (CUDA)." };
        var traceStep = new Option<int>("--trace-step") { Description = "Which decoding step --trace records: 1 is the first (a block's first steps run its decoding layers uncaptured under --cuda-graphs).", DefaultValueFactory = _ => 1 };
        var policy = new PolicyOptions();
        foreach (var o in new Option[] { model, dummy, promptLen, genLen, device, dtype, repeat, json, trace, traceStep, pressure }.Concat(policy.All()))
            command.Options.Add(o);

        command.SetAction(parse =>
        {
            var choice = policy.Read(parse);
            var schedule = parse.GetValue(pressure) is { } file ? PressureSchedule.Read(file.FullName) : null;
            if (schedule is not null && (!choice.ThroughActors || choice.Compare))
                throw new CliException("--pressure needs --engine actors (the scheduler sheds batches)", 2);
            var prompt = parse.GetValue(promptLen);
            var gen = parse.GetValue(genLen);
            var runs = parse.GetValue(repeat);
            if (prompt < 1 || gen < 1) throw new CliException("--prompt-len and --gen-len must be at least 1", 2);
            if (runs < 1) throw new CliException("--repeat must be at least 1", 2);
            var traced = parse.GetValue(traceStep);
            if (parse.GetResult(traceStep) is { Implicit: false } && (traced < 1 || traced >= gen))
                throw new CliException($"--trace-step must be a decoding step, 1 to {gen - 1} for --gen-len {gen} (got {traced})", 2);
            if (!choice.Auto && choice.GpuBatchSize is null) throw new CliException("give --gpu-batch-size, or --policy auto", 2);
            var config = ModelConfigs.Resolve(parse.GetValue(model)!);
            if (prompt + gen > config.MaxPositionEmbeddings)
                throw new CliException($"--prompt-len {prompt} + --gen-len {gen} exceeds the model's context of {config.MaxPositionEmbeddings}", 2);
            var deviceName = parse.GetValue(device) ?? (TorchSharp.torch.cuda.is_available() ? "cuda" : "cpu");
            var dev = Devices.Resolve(deviceName);
            var type = Devices.ResolveDType(parse.GetValue(dtype), dev);
            var modelArg = parse.GetValue(model)!;
            var isDummy = parse.GetValue(dummy);
            if (!isDummy && !Directory.Exists(modelArg))
                throw new CliException($"'{modelArg}' is a named size without a checkpoint: pass --dummy for random weights", 2);

            using IWeightSource source = isDummy ? new DummyWeightSource(config, seed: 0) : ModelFiles.OpenCheckpoint(modelArg, config);
            var asJson = parse.GetValue(json);
            Action<string> log = line => Console.Error.WriteLine($"bench: {line}");
            using var setup = RunSetup.Create(config, source, dev, type, choice, new Workload(prompt, gen), defaultGpuBatchSize: 1, elastic: schedule is not null);
            log($"{config.Name} on {deviceName} ({type}); policy {setup.Policy}{(dev.type == TorchSharp.DeviceType.CUDA ? $"; decoding attention by {parse.GetValue(policy.DecodeAttention)}" : "")}; weights loaded in {setup.LoadTime.TotalSeconds:F1} s" +
                (choice.Auto && choice.ThroughActors ? $"; the node's planner for this workload: {setup.PlannedFor(prompt, gen)?.ToString() ?? "nothing fits"}" : ""));
            if (choice.Compare)
            {
                var (direct, actors) = BenchRunner.Compare(setup, prompt, gen, runs, log);
                var d = BenchRunner.Median(direct);
                var a = BenchRunner.Median(actors);
                var ratio = a.TotalThroughput / d.TotalThroughput;
                Console.WriteLine(asJson
                    ? System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, object>
                    {
                        ["model"] = config.Name, ["direct_total_throughput"] = d.TotalThroughput, ["actors_total_throughput"] = a.TotalThroughput,
                        ["actors_over_direct"] = ratio,
                        ["direct_runs"] = direct.Select(r => r.TotalThroughput).ToArray(), ["actors_runs"] = actors.Select(r => r.TotalThroughput).ToArray(),
                    }, new System.Text.Json.JsonSerializerOptions { WriteIndented = true })
                    : $"direct {d.TotalThroughput:F1} token/s, actors {a.TotalThroughput:F1} token/s: actors at {ratio:P1} of direct (medians of {runs})");
                return 0;
            }
            var results = BenchRunner.Run(setup, prompt, gen, runs, log, schedule);
            var median = BenchRunner.Median(results);
            if (parse.GetValue(trace) is { } tracePath)
            {
                log($"trace of decoding step {traced} written to {tracePath}: {BenchRunner.Trace(setup, prompt, gen, tracePath, traced)}");
            }
            Console.WriteLine(asJson ? BenchReport.Json(setup, median, results) : BenchReport.Text(setup, median, results));
            return 0;
        });
        return command;
    }
}
