using System.Diagnostics;
using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using OffloadRuntime = ActorInfer.Runtime.Schedule.OffloadRuntime;
using Akka.Event;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Actors.Diagnostics;

/// <summary>
/// The answer to a budget fall, run once on a miniature of its own (a two-layer model of width 8, on the CPU, with its
/// own tiers): what <see cref="AheadCompilation"/> cannot compile ahead under tiered compilation (the engine's interface
/// implementations, generic instantiations over value types such as the honour record's tuples and the logging calls'
/// arguments) compiles here, off the tensor thread, rather than inside the first real fall's time to honour. Nothing
/// of the running job is touched.
/// </summary>
internal static class BudgetFallWarmup
{
    private static readonly OptConfig Miniature = new()
    {
        Name = "rehearsal", VocabSize = 16, HiddenSize = 8, NumHiddenLayers = 2, NumAttentionHeads = 2, FfnDim = 16,
        MaxPositionEmbeddings = 32, WordEmbedProjDim = 8,
    };

    /// <returns>The GPU batches it dropped, the weight bytes it copied (back onto the device: those that left went to their host copies), and the layers that stopped for a change.</returns>
    public static (int BatchesDropped, long WeightBytesMoved, int Yields) Run()
    {
        using var scope = NewDisposeScope();
        using var source = new DummyWeightSource(Miniature, seed: 0);
        var tiers = new TierSet(new MemoryTier(TierKind.Device, 1L << 26, CPU, pin: false), new MemoryTier(TierKind.Cpu, 1L << 26, CPU, pin: false), null);
        using var copies = new CpuCopyEngine();
        var onDevice = TierFractions.AllGpu;
        var policy = new Policy(1, 2, onDevice, onDevice, onDevice);
        using var runtime = new OffloadRuntime(Miniature, source, policy, tiers, copies, ScalarType.Float32, keepHostCopies: true);
        using var offloaded = new OffloadedEngine(runtime, _ => "");
        IInferenceEngine engine = offloaded;
        var budgets = new TierBudgets(1L << 26, 1L << 26, 0);
        var halfOff = new BlockPolicy(1, 2, "rehearsal") { Runtime = new Policy(1, 2, TierFractions.FromPercent(50, 50), onDevice, onDevice) };
        var back = new BlockPolicy(1, 2, "rehearsal") { Runtime = policy };
        var oneBatch = halfOff with { NumGpuBatches = 1 };
        IGpuBatch[] batches = [engine.Open([Sequence(0)]), engine.Open([Sequence(1)])];
        var clock = new WaitingChanges();
        var dropped = 0;
        var yields = 0;
        var log = Akka.Event.NoLogger.Instance;

        // A prefill, then a decoding step that loses its second batch at its first layer boundary, as a fall does.
        foreach (var step in new[] { TokenStep.Prefill, TokenStep.Prefill.Next() })
        {
            var active = batches.Where(b => !b.Disposed).ToArray();
            foreach (var b in active) engine.Embed(b, step).Dispose();
            for (var layer = 0; layer < Miniature.NumHiddenLayers; layer++)
            {
                if (!step.IsPrefill && layer == 1)
                {
                    var now = Stopwatch.GetTimestamp();
                    clock.Arrived(now, now, now, withinAtChange: false, arrivedIn: "decoding");
                    log.Info("policy {0} applies on arrival in block {1}", (object)halfOff, 1);
                    _ = engine.AtLayerBoundary;
                    var block = new RunningBlock(1, halfOff, [], batches.Length)
                    {
                        Active = [new GpuBatchIndex(0), new GpuBatchIndex(1)],
                        CursorPosition = layer * 2,
                        Step = step,
                    };
                    block.Work[0] = active[0];
                    block.Work[1] = active[1];
                    _ = BlockFitting.AtBoundaryNow(engine, block);
                    clock.StartApplying();
                    // A block of one: the second batch is dropped.
                    dropped += BlockFitting.Shrink(engine, block, oneBatch, budgets, atStepEnd: false, clock);
                    new PolicyApplier(engine, clock, _ => { }, log).ApplyAndHonour(halfOff, budgets, block, dropped: true);
                    _ = block.TakeDropped();
                    BlockFitting.GoesOn(block, atStepEnd: false);
                    active = [active[0]];
                    // The batch left runs alone: its layer stops for the next change on its way, then runs again.
                    engine.Changes!.Sent();
                    if (engine.RunLayerOrYield(new LayerIndex(layer), active[0], empty(0), step) is { } ran) ran.Dispose();
                    else yields++;
                    engine.Changes.Received();
                }
                foreach (var b in active) engine.RunLayer(new LayerIndex(layer), b, empty(0), step).Dispose();
            }
            foreach (var b in active)
                using (var tokens = engine.BeginChooseTokens(b, empty(0), step))
                    tokens.Complete();
        }
        engine.Apply(back, budgets);
        foreach (var b in batches) b.Dispose();
        return (dropped, offloaded.WeightBytesMoved, yields);
    }

    private static SequenceState Sequence(int i)
    {
        int[] ids = [2, 3 + i, 4 + i];
        var request = new CompletionRequest { Prompt = Prompt.FromIds(ids), MaxTokens = 2, Temperature = 0, IgnoreEos = true };
        return new SequenceState(request, ids, seed: i, Miniature.EosTokenId);
    }
}
