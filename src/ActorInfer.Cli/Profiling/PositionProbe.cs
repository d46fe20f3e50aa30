using System.Diagnostics;
using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.CpuAttention;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Cli.Profiling;

/// <summary>
/// The host's time per schedule position, measured through the runtime: decoding steps of a small model (OPT-125M
/// shapes, random weights) in blocks of 8 GPU batches of one sequence, weights and activations on the device, the
/// cache in CPU memory with CPU attention (the path with the most host work per position). The device and the CPU
/// do little for so small a model, so a step takes as long as the host takes to issue its positions.
/// </summary>
public static class PositionProbe
{
    private const int Batches = 8, PromptLength = 16, Tokens = 10;

    public static double SecondsPerPosition(Device device, ScalarType dtype, CpuAttentionKernel kernel, Action<string> log)
    {
        var config = OptConfigs.Resolve("opt-125m");
        using var source = new DummyWeightSource(config, seed: 0);
        var tiers = TierSet.Create(8L << 30, 8L << 30, diskFolder: null, 0);
        using ICopyEngine copies = device.type == TorchSharp.DeviceType.CUDA ? new CudaCopyEngine() : new CpuCopyEngine();
        var policy = new Policy(1, Batches, TierFractions.AllGpu, TierFractions.AllCpu, TierFractions.AllGpu) { CpuAttention = true };
        using var engine = new OffloadEngine(config, source, policy, tiers, copies, dtype) { CpuAttentionKernel = kernel };
        var steps = new List<double>();
        for (var run = 0; run < 2; run++)
        {
            var block = Enumerable.Range(0, Batches).Select(i =>
            {
                var ids = Enumerable.Range(0, PromptLength).Select(j => 4 + (i * 31 + j * 7) % (config.VocabSize - 4)).ToArray();
                var request = new CompletionRequest { Prompt = Prompt.FromIds(ids), MaxTokens = Tokens, Temperature = 0, IgnoreEos = true };
                return new SequenceState(request, ids, seed: i, config.EosTokenId);
            }).ToList();
            var watch = Stopwatch.StartNew();
            engine.Generate(block, _ => "", step =>
            {
                // The first run warms up; of the second, every decoding step but the first.
                if (run == 1 && step.Value >= 2) steps.Add(watch.Elapsed.TotalSeconds);
                watch.Restart();
            });
        }
        steps.Sort();
        var positions = (config.NumHiddenLayers + 2) * Batches;
        var perPosition = steps[steps.Count / 2] / positions;
        log($"host per schedule position (OPT-125M shapes, {Batches} GPU batches of 1, CPU attention {kernel.Spec}): {perPosition * 1e6:F0} us");
        return perPosition;
    }
}
