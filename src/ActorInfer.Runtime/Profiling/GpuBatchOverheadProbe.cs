using System.Diagnostics;
using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Profiling;

/// <summary>
/// The fixed time a (layer, GPU batch) position costs beyond its arithmetic and traffic (the profile's
/// <c>compute.gpu_batch_overhead_s</c>): the runtime's own decoding step, all on the device, over a model so small
/// that its arithmetic is negligible, with many GPU batches of one sequence. A step's time divided by its positions
/// ((layers + 2) x GPU batches: the input and output layers are positions too) is the overhead of one.
/// </summary>
internal sealed class GpuBatchOverheadProbe(ICopyEngine copies, Action<string> log)
{
    public const int Layers = 4, GpuBatches = 8, Tokens = 12, PromptLength = 8;

    public static OptConfig Config { get; } = new()
    {
        Name = "gpu-batch-overhead-probe", VocabSize = 512, HiddenSize = 64, NumHiddenLayers = Layers, NumAttentionHeads = 4,
        FfnDim = 256, MaxPositionEmbeddings = 64, WordEmbedProjDim = 64,
    };

    /// <summary>Seconds per position: the median decoding step of the second of two runs, over its positions.</summary>
    public double Measure(ScalarType dtype)
    {
        var source = new DummyWeightSource(Config, seed: 1);
        using var tiers = TierSet.Create(1L << 30, 1L << 30, null, 0);
        var policy = new Policy(1, GpuBatches, TierFractions.AllGpu, TierFractions.AllGpu, TierFractions.AllGpu) { CpuAttention = false };
        using var engine = new OffloadRuntime(Config, source, policy, tiers, copies, dtype);
        double MedianStep()
        {
            var sequences = Enumerable.Range(0, GpuBatches).Select(i =>
            {
                int[] ids = [Config.BosTokenId, .. Enumerable.Range(0, PromptLength - 1).Select(j => 4 + (i * 31 + j * 7) % (Config.VocabSize - 4))];
                return new SequenceState(new CompletionRequest { Prompt = Prompt.FromIds(ids), MaxTokens = Tokens, Temperature = 0, IgnoreEos = true },
                    ids, seed: i, Config.EosTokenId);
            }).ToArray();
            var stamps = new List<long>();
            engine.Generate(sequences, ids => string.Join(",", ids), _ => stamps.Add(Stopwatch.GetTimestamp()));
            var steps = stamps.Zip(stamps.Skip(1), (a, b) => Stopwatch.GetElapsedTime(a, b).TotalSeconds).Order().ToArray();
            return steps[steps.Length / 2];
        }
        MedianStep();
        var step = MedianStep();
        var perPosition = step / ((Layers + 2) * GpuBatches);
        log($"GPU batch overhead: {perPosition * 1e3:F3} ms a (layer, GPU batch) position ({step * 1e3:F2} ms a decoding step of {(Layers + 2) * GpuBatches} positions)");
        return perPosition;
    }
}
