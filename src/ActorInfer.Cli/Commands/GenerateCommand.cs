using System.CommandLine;
using System.Text.Json;
using ActorInfer.Cli.Engine;
using ActorInfer.Model.Generation;
using ActorInfer.Planning;

namespace ActorInfer.Cli.Commands;

/// <summary>`actorinfer generate`: completions for every request of a JSONL file, in input order.</summary>
public static class GenerateCommand
{
    public static Command Create()
    {
        var command = new Command("generate", "Generate completions for a JSONL file of OpenAI completion requests.");
        var model = new Option<string>("--model") { Description = "Model directory (Hugging Face OPT checkpoint) or named size (opt-125m ... opt-175b).", Required = true };
        var input = new Option<FileInfo>("--input") { Description = "JSONL file, one OpenAI completion request body per line.", Required = true };
        var output = new Option<FileInfo>("--output") { Description = "JSONL file to write, one result per input line.", Required = true };
        var device = new Option<string>("--device") { Description = "cpu or cuda.", DefaultValueFactory = _ => "cpu" };
        device.AcceptOnlyFromAmong("cpu", "cuda");
        var dtype = new Option<string?>("--dtype") { Description = "float32, float16 or bfloat16 (default: float32 on cpu, float16 on cuda)." };
        dtype.AcceptOnlyFromAmong("float32", "float16", "bfloat16");
        var batchSize = new Option<int>("--batch-size") { Description = "Sequences per GPU batch when no policy says otherwise (same as --gpu-batch-size).", DefaultValueFactory = _ => 8 };
        var keepGoing = new Option<bool>("--keep-going") { Description = "Write an error line for a bad input line and go on with the others." };
        var dummy = new Option<bool>("--dummy") { Description = "Random weights of the model's shape instead of a checkpoint." };
        var runDir = new Option<DirectoryInfo?>("--run-dir") { Description = "Record the run's timeline (budgets, bytes held, block size, tokens, drops) there, for `actorinfer report`." };
        var pressure = new Option<FileInfo?>("--pressure") { Description = "Replay a pressure schedule (JSONL: {\"at_ms\": T | \"at_step\": K, \"tier\": \"gpu\"|\"cpu\", \"budget\": \"6GiB\"}) against the job." };
        var policy = new PolicyOptions();
        foreach (var o in new Option[] { model, input, output, device, dtype, batchSize, keepGoing, dummy, pressure, runDir }.Concat(policy.All()))
            command.Options.Add(o);

        command.SetAction(parse =>
        {
            var options = new GenerateOptions(
                parse.GetValue(model)!, parse.GetValue(input)!, parse.GetValue(output)!, parse.GetValue(device)!,
                parse.GetValue(dtype), parse.GetValue(batchSize), parse.GetValue(keepGoing), parse.GetValue(dummy), policy.Read(parse))
            {
                Pressure = parse.GetValue(pressure),
                RunDir = parse.GetValue(runDir),
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

        var device = Devices.Resolve(o.Device);
        var dtype = Devices.ResolveDType(o.DType, device);
        using var loaded = LoadedModel.Open(o.Model, o.Dummy);
        var factory = new CompletionFactory(loaded.Config, loaded.Codec);
        var lines = RequestFile.Read(o.Input.FullName, factory);
        var bad = lines.Where(l => l.Error is not null).ToList();
        if (bad.Count > 0 && !o.KeepGoing)
        {
            foreach (var b in bad.Take(10)) Console.Error.WriteLine($"error: {o.Input.Name} line {b.LineNumber}: {b.Error!.Message}");
            if (bad.Count > 10) Console.Error.WriteLine($"error: ... and {bad.Count - 10} more bad lines");
            Console.Error.WriteLine("error: no request was run; fix the lines above or pass --keep-going to run the others");
            return 1;
        }

        var good = lines.Where(l => l.Sequence is not null).ToList();
        if (good.Count == 0) throw new CliException("no input line is a valid request");
        var workload = new Workload(good.Max(l => l.Sequence!.PromptIds.Count), good.Max(l => l.Sequence!.Request.MaxTokens));
        var schedule = o.Pressure is { } file ? PressureSchedule.Read(file.FullName) : null;
        if (schedule is not null && !o.Policy.ThroughActors) throw new CliException("--pressure needs --engine actors (the scheduler sheds batches)", 2);
        using var setup = EngineSetup.Create(loaded.Config, loaded.Source, device, dtype, o.Policy, workload, o.BatchSize, elastic: schedule is not null);
        using var replay = schedule is null ? null : new PressureReplay(setup, schedule, workload.PromptLength, workload.GenerationLength, setup.Hardware);
        if (o.RunDir is not null && !o.Policy.ThroughActors) throw new CliException("--run-dir needs --engine actors", 2);
        using var recorder = o.RunDir is null ? null : new RunRecorder(o.RunDir.FullName);
        if (replay is not null || recorder is not null)
        {
            var driver = setup.Actors(factory, out var offloaded);
            if (recorder is not null)
                ActorInfer.Actors.Diagnostics.TensorThreadClock.Slow = (what, ms) =>
                    recorder.Event("slow", string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{what} {ms:F0} ms"));
            var drops = 0;
            ActorInfer.Planning.Policy? lastPolicy = null;
            offloaded.StepDone = step =>
            {
                replay?.OnStep(step);
                if (recorder is null) return;
                // The policy the runtime runs (placement and geometry), recorded when it changes.
                if (!ReferenceEquals(offloaded.Runtime.Policy, lastPolicy))
                {
                    lastPolicy = offloaded.Runtime.Policy;
                    recorder.Event("policy", lastPolicy.ToString());
                }
                foreach (var d in driver.Drops.Skip(drops)) recorder.Event("drop", $"{d.Batches} GPU batches, {d.Sequences} sequences");
                drops = driver.Drops.Count;
                recorder.Sample(replay?.GpuBudget ?? setup.Tiers.Device.BudgetBytes, replay?.CpuBudget ?? setup.Tiers.Cpu.BudgetBytes,
                    setup.Tiers.Device.BytesHeld, setup.Tiers.Cpu.BytesHeld, offloaded.RunningSequences, offloaded.TokensGenerated);
            };
            if (replay is not null)
            {
                if (recorder is not null) replay.Applied = e => recorder.Event("pressure", $"{e.Tier} {ActorInfer.Planning.ByteSize.Format(e.Budget)}");
                replay.Start();
            }
        }
        var results = new string?[lines.Count];
        foreach (var b in bad) results[b.Index] = CompletionJson.ErrorLine(b.Id, b.LineNumber, b.Error!.Param, b.Error.Message);

        var partial = o.Output.FullName + ".partial";
        ProgressReporter.Run("generate", good.Count, report =>
        {
            var done = 0;
            long tokens = 0;
            // Under a pressure schedule the scheduler gets every request at once and forms its blocks as each policy
            // allows; otherwise requests go a block at a time, for progress reports.
            foreach (var chunk in good.Chunk(replay is null ? setup.Policy.BlockSize : good.Count))
            {
                if (o.Policy.ThroughActors)
                {
                    var driver = setup.Actors(factory, out _);
                    var items = chunk.Select(l => new ActorInfer.Actors.Scheduling.SchedulerProtocol.WorkItem(
                        $"{l.Index}", l.Id, l.Sequence!.Request, l.Sequence.Seed)).ToArray();
                    var lines = driver.Run(items, TimeSpan.FromDays(1));
                    for (var i = 0; i < chunk.Length; i++) results[chunk[i].Index] = lines[i];
                }
                else
                {
                    setup.Engine.Generate(chunk.Select(l => l.Sequence!).ToList(), factory.Decode);
                    foreach (var line in chunk)
                        results[line.Index] = CompletionJson.ToJsonLine(factory.Result(line.Sequence!, line.Id));
                }
                done += chunk.Length;
                tokens += chunk.Sum(l => CompletionTokens(results[l.Index]!));
                report(done, tokens);
            }
        });
        if (replay is not null) Console.Error.WriteLine(replay.Summary(setup.Driver!));
        File.WriteAllLines(partial, results.Select(r => r!));
        File.Move(partial, o.Output.FullName, overwrite: true);
        if (bad.Count > 0)
            Console.Error.WriteLine($"generate: {good.Count} requests done, {bad.Count} bad lines written as errors");
        return bad.Count > 0 ? 1 : 0;
    }
}
