using ActorInfer.Actors.Node;
using System.Diagnostics;
using ActorInfer.Cli.Running;
using ActorInfer.Model.Generation;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;

namespace ActorInfer.Cli.Bench;

/// <summary>FlexGen's metrics for one measured generation of a full block.</summary>
public sealed record BenchRun(double PrefillSeconds, double DecodeSeconds, int BlockSize, int PromptLength, int GenerationLength,
    TierPeaks AccountedPeak, long? DevicePeakBytes)
{
    public double PrefillThroughput => BlockSize * PromptLength / PrefillSeconds;
    public double DecodeThroughput => GenerationLength > 1 ? BlockSize * (GenerationLength - 1) / DecodeSeconds : 0;
    public double TotalThroughput => BlockSize * GenerationLength / (PrefillSeconds + DecodeSeconds);
}

public sealed record TierPeaks(long Device, long Cpu, long Disk);

/// <summary>Runs the block a warm-up time and then <c>repeat</c> measured times with random prompts of the asked length.</summary>
public static class BenchRunner
{
    /// <param name="pressure">A budget schedule replayed during one measured run after the warm-up (through the node's actors).</param>
    public static IReadOnlyList<BenchRun> Run(RunSetup setup, int promptLength, int generationLength, int repeat, Action<string> log,
        IReadOnlyList<Running.PressureLine>? pressure = null)
    {
        var blockSize = BlockSize(setup, promptLength, generationLength);
        if (pressure is not null)
        {
            log($"warm-up: block of {blockSize}, prompt {promptLength}, {generationLength} tokens");
            Measure(setup, promptLength, generationLength, seed: 999);
            var factory = new CompletionFactory(setup.Config, null);
            using var run = Running.NodeRun.Start(setup, factory, pressure, runDir: null);
            var pressed = Measure(setup, promptLength, generationLength, seed: 0, run: run);
            log($"run under pressure: prefill {pressed.PrefillSeconds:F3} s, decode {pressed.DecodeSeconds:F3} s, total {pressed.TotalThroughput:F2} token/s");
            log(run.Summary());
            return [pressed];
        }
        // The warm-up is a whole measured run: the first pass over each shape pays for kernel selection and allocator growth.
        log($"warm-up: block of {blockSize}, prompt {promptLength}, {generationLength} tokens");
        var warm = Measure(setup, promptLength, generationLength, seed: 999);
        log($"warm-up took prefill {warm.PrefillSeconds:F3} s, decode {warm.DecodeSeconds:F3} s (the first pass over each shape)");
        var runs = new List<BenchRun>();
        for (var r = 0; r < repeat; r++)
        {
            var run = Measure(setup, promptLength, generationLength, seed: r);
            log($"run {r + 1}/{repeat}: prefill {run.PrefillSeconds:F3} s, decode {run.DecodeSeconds:F3} s, total {run.TotalThroughput:F2} token/s");
            runs.Add(run);
        }
        return runs;
    }

    /// <summary>
    /// The actors' overhead, measured in one process so both engines see the same machine state: after a warm-up
    /// of each, measured runs alternate between the runtime's own loop and the actor-driven one.
    /// </summary>
    public static (IReadOnlyList<BenchRun> Direct, IReadOnlyList<BenchRun> Actors) Compare(RunSetup setup, int promptLength,
        int generationLength, int repeat, Action<string> log)
    {
        var direct = new List<BenchRun>();
        var actors = new List<BenchRun>();
        foreach (var throughActors in new[] { false, true })
        {
            setup.ThroughActors = throughActors;
            Measure(setup, promptLength, generationLength, seed: 999);
        }
        for (var r = 0; r < repeat; r++)
            foreach (var throughActors in new[] { false, true })
            {
                setup.ThroughActors = throughActors;
                var run = Measure(setup, promptLength, generationLength, seed: r);
                (throughActors ? actors : direct).Add(run);
                log($"run {r + 1}/{repeat} {(throughActors ? "actors" : "direct")}: prefill {run.PrefillSeconds:F3} s, decode {run.DecodeSeconds:F3} s, total {run.TotalThroughput:F2} token/s");
            }
        setup.ThroughActors = true;
        return (direct, actors);
    }

    /// <summary>
    /// One more run with a timeline of one decoding step (CUDA): which copy and which compute ran when, per
    /// stream, written in the Chrome trace format. Returns a summary of busy and overlapped time per lane.
    /// </summary>
    /// <param name="decodingStep">The decoding step recorded, 1 for the first.</param>
    public static string Trace(RunSetup setup, int promptLength, int generationLength, string path, int decodingStep = 1)
    {
        if (setup.Copies is not ActorInfer.Runtime.Copies.CudaCopyEngine cudaCopies)
            throw new CliException("--trace records CUDA streams: it needs --device cuda");
        if (generationLength < 2) throw new CliException("--trace needs --gen-len of at least 2 (it traces a decoding step)");
        using var timeline = new ActorInfer.Runtime.Cuda.CudaTimeline();
        timeline.Warm();
        setup.Engine.Timeline = timeline;
        cudaCopies.Timeline = timeline;
        try
        {
            // Called as each step ends: the recording starts when the step before the traced one ends.
            var decoded = 0;
            Measure(setup, promptLength, generationLength, seed: 12345, onStep: step =>
            {
                if (!step.IsPrefill) decoded++;
                if (decoded == decodingStep - 1) timeline.Start();
                else if (decoded == decodingStep && timeline.Active) timeline.Stop();
            });
            timeline.Write(path);
            return timeline.Summary();
        }
        finally
        {
            setup.Engine.Timeline = null;
            cudaCopies.Timeline = null;
        }
    }

    /// <summary>
    /// The block measured: the size the node's planner gives these lengths through the actors (the runtime's policy's
    /// on the runtime's own loop).
    /// </summary>
    public static int BlockSize(RunSetup setup, int promptLength, int generationLength) =>
        setup.ThroughActors ? setup.PlannedFor(promptLength, generationLength)?.BlockSize ?? setup.Policy.BlockSize : setup.Policy.BlockSize;

    private static BenchRun Measure(RunSetup setup, int promptLength, int generationLength, int seed, Action<TokenStep>? onStep = null,
        Running.NodeRun? run = null)
    {
        var config = setup.Config;
        var random = new Random(seed);
        var block = Enumerable.Range(0, BlockSize(setup, promptLength, generationLength)).Select(i =>
        {
            var ids = new int[promptLength];
            ids[0] = config.BosTokenId;
            for (var j = 1; j < promptLength; j++) ids[j] = random.Next(3, config.VocabSize);
            var request = new CompletionRequest
            {
                Prompt = Prompt.FromIds(ids), MaxTokens = generationLength, Temperature = 0, IgnoreEos = true,
            };
            return new SequenceState(request, ids, seed: i, config.EosTokenId);
        }).ToList();

        foreach (var tier in setup.Tiers.All()) tier.ResetPeak();
        var cuda = MachineMemory.HasCuda && setup.Device.type == TorchSharp.DeviceType.CUDA;
        long? devicePeak = cuda ? MachineMemory.Device().Total - MachineMemory.Device().Free : null;
        var watch = Stopwatch.StartNew();
        double prefill = 0;
        void StepDone(TokenStep step)
        {
            if (step.IsPrefill) prefill = watch.Elapsed.TotalSeconds;
            onStep?.Invoke(step);
            if (cuda)
            {
                var (free, total) = MachineMemory.Device();
                devicePeak = Math.Max(devicePeak!.Value, total - free);
            }
        }
        if (setup.ThroughActors)
        {
            var factory = new CompletionFactory(config, null);
            using var own = run is null ? Running.NodeRun.Start(setup, factory, schedule: null, runDir: null) : null;
            var through = run ?? own!;
            through.StepDone = step => StepDone(new TokenStep(step));
            var items = block.Select((s, i) => new ActorInfer.Actors.Scheduling.SchedulerProtocol.WorkItem($"{i}", $"{i}", s.Request, s.Seed)).ToArray();
            watch.Restart();
            through.Run(items);
            through.StepDone = null;
        }
        else
            setup.Engine.Generate(block, _ => "", StepDone);
        var total = watch.Elapsed.TotalSeconds;
        var peaks = new TierPeaks(setup.Tiers.Device.PeakBytes, setup.Tiers.Cpu.PeakBytes, setup.Tiers.Disk?.PeakBytes ?? 0);
        return new BenchRun(prefill, total - prefill, block.Count, promptLength, generationLength, peaks, devicePeak);
    }

    /// <summary>The run whose total throughput is the median (FlexGen reports one run; we report the median of several).</summary>
    public static BenchRun Median(IReadOnlyList<BenchRun> runs) => runs.OrderBy(r => r.TotalThroughput).ElementAt(runs.Count / 2);
}
