using System.CommandLine;
using System.Text.Json;
using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Memory;
using Tier = ActorInfer.Actors.Memory.Tier;
using ActorInfer.Actors.Node;
using ActorInfer.Actors.Scheduling;
using ActorInfer.Cli.Running;
using ActorInfer.Model.Generation;
using ActorInfer.Planning;

namespace ActorInfer.Cli.Commands;

/// <summary>`actorinfer generate`: completions for every request of a JSONL file, in input order.</summary>
public static class GenerateCommand
{
    public static Command Create()
    {
        var command = new Command("generate", "Generate completions for a JSONL file of OpenAI completion requests.");
        var model = new Option<string?>("--model") { Description = "Model directory (Hugging Face checkpoint) or named size (opt-125m ... opt-175b); with --config, overrides actorinfer.model." };
        var config = new Option<string?>("--config")
        {
            Description = "Run as the node this HOCON file describes (its model, device, budgets, planner and scheduler), in this process without HTTP; " +
                          "placement options are then the file's.",
        };
        var input = new Option<FileInfo>("--input") { Description = "JSONL file, one OpenAI completion request body per line.", Required = true };
        var output = new Option<FileInfo>("--output") { Description = "JSONL file to write, one result per input line.", Required = true };
        var device = new Option<string>("--device") { Description = "cpu or cuda.", DefaultValueFactory = _ => "cpu" };
        device.OneOf("cpu", "cuda");
        var dtype = new Option<string?>("--dtype") { Description = "float32, float16 or bfloat16 (default: float32 on cpu, float16 on cuda)." };
        dtype.OneOf("float32", "float16", "bfloat16");
        var batchSize = new Option<int>("--batch-size") { Description = "Sequences per GPU batch when no policy says otherwise (same as --gpu-batch-size).", DefaultValueFactory = _ => 8 };
        var keepGoing = new Option<bool>("--keep-going") { Description = "Write an error line for a bad input line and go on with the others." };
        var dummy = new Option<bool>("--dummy") { Description = "Random weights of the model's shape instead of a checkpoint." };
        var runDir = new Option<DirectoryInfo?>("--run-dir") { Description = "Record the run's timeline (budgets, bytes held, block size, tokens, drops) there, for `actorinfer report`." };
        var pressure = new Option<FileInfo?>("--pressure") { Description = "Replay a pressure schedule (JSONL: {\"at_ms\": T | \"at_step\": K, \"tier\": \"gpu\"|\"cpu\", \"budget\": \"6GiB\"}) against the job." };
        var policy = new PolicyOptions();
        foreach (var o in new Option[] { model, config, input, output, device, dtype, batchSize, keepGoing, dummy, pressure, runDir }.Concat(policy.All()))
            command.Options.Add(o);

        command.SetAction(parse =>
        {
            var configPath = parse.GetValue(config);
            if (configPath is null && parse.GetValue(model) is null) throw new CliException("give --model, or --config with a node's HOCON file", 2);
            if (configPath is not null)
            {
                // The file decides what a node decides: options that would set it otherwise are refused, not ignored.
                var given = new Option[] { device, dtype, batchSize, dummy }.Concat(policy.All()).Where(o => parse.GetResult(o) is { Implicit: false }).ToArray();
                if (given.Length > 0)
                    throw new CliException($"--config takes the node's device, budgets and planner from the file: drop {string.Join(", ", given.Select(o => o.Name))}", 2);
            }
            var options = new GenerateOptions(
                parse.GetValue(model)!, parse.GetValue(input)!, parse.GetValue(output)!, parse.GetValue(device)!,
                parse.GetValue(dtype), parse.GetValue(batchSize), parse.GetValue(keepGoing), parse.GetValue(dummy), policy.Read(parse))
            {
                Pressure = parse.GetValue(pressure),
                RunDir = parse.GetValue(runDir),
                Config = configPath,
            };
            return Generate(options);
        });
        return command;
    }

    public sealed record GenerateOptions(string Model, FileInfo Input, FileInfo Output, string Device, string? DType,
        int BatchSize, bool KeepGoing, bool Dummy, PolicyChoice Policy)
    {
        public FileInfo? Pressure { get; init; }
        public DirectoryInfo? RunDir { get; init; }

        /// <summary>A node's HOCON file: the run is that node's, in this process without HTTP.</summary>
        public string? Config { get; init; }
    }

    /// <summary>The tokens a result line generated (none for an error line).</summary>
    private static long CompletionTokens(string resultLine)
    {
        using var doc = JsonDocument.Parse(resultLine);
        return doc.RootElement.TryGetProperty("usage", out var usage) && usage.TryGetProperty("completion_tokens", out var n) ? n.GetInt64() : 0;
    }

    public static int Generate(GenerateOptions o)
    {
        if (o.BatchSize < 1) throw new CliException($"--batch-size must be at least 1 (got {o.BatchSize})", 2);
        if (!o.Input.Exists) throw new CliException($"input file not found: {o.Input.FullName}");
        var outputDir = o.Output.Directory;
        if (outputDir is not null && !outputDir.Exists) throw new CliException($"output folder does not exist: {outputDir.FullName}");

        if (o.Config is not null) return GenerateOnNode(o);
        var device = Devices.Resolve(o.Device);
        var dtype = Devices.ResolveDType(o.DType, device);
        using var loaded = LoadedModel.Open(o.Model, o.Dummy);
        var factory = new CompletionFactory(loaded.Config, loaded.Codec);
        if (ReadRequests(o, factory) is not var (lines, bad, good)) return 1;
        var workload = new Workload(good.Max(l => l.Sequence!.PromptIds.Count), good.Max(l => l.Sequence!.Request.MaxTokens));
        var schedule = o.Pressure is { } file ? PressureSchedule.Read(file.FullName) : null;
        if (schedule is not null && !o.Policy.ThroughActors) throw new CliException("--pressure needs --engine actors (the scheduler sheds batches)", 2);
        if (o.RunDir is not null && !o.Policy.ThroughActors) throw new CliException("--run-dir needs --engine actors", 2);
        using var setup = RunSetup.Create(loaded.Config, loaded.Source, device, dtype, o.Policy, workload, o.BatchSize, elastic: schedule is not null);
        var results = Results(lines.Count, bad);
        if (o.Policy.ThroughActors)
        {
            using var run = NodeRun.Start(setup, factory, schedule, o.RunDir);
            RunAll(run, good, results);
            if (schedule is not null) Console.Error.WriteLine(run.Summary());
        }
        else
        {
            ProgressReporter.Run("generate", good.Count, report =>
            {
                var done = 0;
                long tokens = 0;
                foreach (var chunk in good.Chunk(setup.Policy.BlockSize))
                {
                    setup.Engine.Generate(chunk.Select(l => l.Sequence!).ToList(), factory.Decode);
                    foreach (var line in chunk)
                        results[line.Index] = CompletionJson.ToJsonLine(factory.Result(line.Sequence!, line.Id));
                    done += chunk.Length;
                    tokens += chunk.Sum(l => CompletionTokens(results[l.Index]!));
                    report(done, tokens);
                }
            });
        }
        if (setup.Engine.Graphs is { } g)
            Console.Error.WriteLine($"generate: cuda graphs: {g.Captures} captured, {g.Replays} replays, {g.Uncaptured} layers run uncaptured" +
                (g.Failure is { } f ? $"; captures stopped: {f}" : ""));
        return Write(o, results, good.Count, bad.Count);
    }

    /// <summary>The request file's lines, bad and good; null (after printing the bad lines) when bad lines stop the run.</summary>
    private static (IReadOnlyList<RequestLine> Lines, List<RequestLine> Bad, List<RequestLine> Good)? ReadRequests(GenerateOptions o,
        CompletionFactory factory)
    {
        var lines = RequestFile.Read(o.Input.FullName, factory);
        var bad = lines.Where(l => l.Error is not null).ToList();
        if (bad.Count > 0 && !o.KeepGoing)
        {
            foreach (var b in bad.Take(10)) Console.Error.WriteLine($"error: {o.Input.Name} line {b.LineNumber}: {b.Error!.Message}");
            if (bad.Count > 10) Console.Error.WriteLine($"error: ... and {bad.Count - 10} more bad lines");
            Console.Error.WriteLine("error: no request was run; fix the lines above or pass --keep-going to run the others");
            return null;
        }
        var good = lines.Where(l => l.Sequence is not null).ToList();
        if (good.Count == 0) throw new CliException("no input line is a valid request");
        return (lines, bad, good);
    }

    /// <summary>
    /// `generate --config`: the node the file describes (the same model loading, planner, budgets and actors as
    /// `actorinfer node`), in this process without HTTP or persistence; a pressure schedule enters its memory-pressure
    /// actor as `/admin/pressure` commands do, tiers named as that route names them.
    /// </summary>
    private static int GenerateOnNode(GenerateOptions o)
    {
        var (settings, _) = NodeCommand.LoadSettings(o.Config!, new NodeCommand.NodeFlags(Model: o.Model), SettingsLoader.ProcessEnvironment());
        if (settings.ServesSeveralModels)
            throw new CliException($"--config {o.Config}: the file serves several models (actorinfer.models); generate runs one: start the node and send a job to it, or give a file of one model", 2);
        var schedule = o.Pressure is { } file ? PressureSchedule.Read(file.FullName) : null;
        Directory.CreateDirectory(settings.DataDir);
        // As the node does: a GPU budget caps the device's allocator before the model loads.
        ActorInferNode.CapDeviceAllocator(settings);
        using var model = NodeModel.Load(settings);
        if (ReadRequests(o, model.Factory) is not var (lines, bad, good)) return 1;
        var (parts, _) = ActorInferNode.Parts(settings, model, probe: null, line => Console.Error.WriteLine($"generate: {line}"));
        using var node = LocalNode.Start(parts);
        var memory = settings.Memory;
        var start = new TierBudgets(memory.GpuBudget ?? 0, memory.CpuBudget ?? 0, memory.DiskBudget ?? 0);
        using var run = NodeRun.Start(new NodeRun.Parts(node, (OffloadedEngine)model.Engine, model.Tiers, parts.ComputeTier, start,
            name => name == "gpu" ? Tier.Gpu : Tier.Cpu), schedule, o.RunDir);
        var results = Results(lines.Count, bad);
        RunAll(run, good, results);
        Console.Error.WriteLine(run.Summary());
        return Write(o, results, good.Count, bad.Count);
    }

    /// <summary>One result line per input line, the bad lines' error lines filled in.</summary>
    private static string?[] Results(int count, IReadOnlyList<RequestLine> bad)
    {
        var results = new string?[count];
        foreach (var b in bad) results[b.Index] = CompletionJson.ErrorLine(b.Id, b.LineNumber, b.Error!.Param, b.Error.Message);
        return results;
    }

    /// <summary>Every good request through the node at once, with progress as blocks finish.</summary>
    private static void RunAll(NodeRun run, IReadOnlyList<RequestLine> good, string?[] results)
    {
        var items = good.Select(l => new SchedulerProtocol.WorkItem($"{l.Index}", l.Id, l.Sequence!.Request, l.Sequence.Seed)).ToArray();
        ProgressReporter.Run("generate", good.Count, report =>
        {
            var done = 0;
            long tokens = 0;
            var answered = run.Run(items, finished =>
            {
                done += finished.Count;
                tokens += finished.Sum(f => CompletionTokens(f.ResultLine));
                report(done, tokens);
            });
            for (var i = 0; i < good.Count; i++) results[good[i].Index] = answered[i];
        });
    }

    private static int Write(GenerateOptions o, string?[] results, int good, int bad)
    {
        var partial = o.Output.FullName + ".partial";
        File.WriteAllLines(partial, results.Select(r => r!));
        File.Move(partial, o.Output.FullName, overwrite: true);
        if (bad > 0) Console.Error.WriteLine($"generate: {good} requests done, {bad} bad lines written as errors");
        return bad > 0 ? 1 : 0;
    }
}
