using System.Reflection;
using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Layers;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

/// <summary>Sequences, the reference run and budget helpers shared by the runtime tests.</summary>
public static class Harness
{
    public const long Generous = 1L << 30;

    public static string Decode(IReadOnlyList<int> ids) => string.Join(",", ids);

    /// <summary>Greedy sequences with prompts of different lengths; every other one asks for prompt logprobs.</summary>
    public static List<SequenceState> Sequences(ModelConfig c, int count, int maxTokens = 5)
    {
        var list = new List<SequenceState>();
        for (var i = 0; i < count; i++)
        {
            var length = 2 + (i * 5 + 3) % 9;
            var ids = Enumerable.Range(0, length).Select(j => 4 + (i * 37 + j * 11) % (c.VocabSize - 4)).ToArray();
            var request = new CompletionRequest
            {
                Prompt = Prompt.FromIds(ids), MaxTokens = maxTokens, Temperature = 0, IgnoreEos = true,
                Echo = i % 2 == 0, Logprobs = i % 2 == 0 ? 1 : null,
            };
            list.Add(new SequenceState(request, ids, seed: i, c.EosTokenId));
        }
        return list;
    }

    public static List<SequenceState> Reference(ModelConfig c, RandomWeights weights, int count, int maxTokens = 5, bool compressCache = false)
    {
        var sequences = Sequences(c, count, maxTokens);
        using var model = ResidentModel.Load(weights, c, ScalarType.Float32, CPU);
        BatchGenerator.Run(model, sequences, Decode, compressCache);
        return sequences;
    }

    /// <summary>
    /// A long prompt of <paramref name="longLength"/> ids and a short one of two, greedy, asking for
    /// <paramref name="longTokens"/> and <paramref name="shortTokens"/> tokens.
    /// </summary>
    public static SequenceState[] LongAndShort(ModelConfig c, int longLength, int longTokens, int shortTokens)
    {
        int[] longPrompt = [.. Enumerable.Range(0, longLength).Select(j => 4 + j * 11 % (c.VocabSize - 4))];
        int[] shortPrompt = [5, 6];
        return
        [
            new(new CompletionRequest { Prompt = Prompt.FromIds(longPrompt), MaxTokens = longTokens, Temperature = 0, IgnoreEos = true }, longPrompt, 0, c.EosTokenId),
            new(new CompletionRequest { Prompt = Prompt.FromIds(shortPrompt), MaxTokens = shortTokens, Temperature = 0, IgnoreEos = true }, shortPrompt, 0, c.EosTokenId),
        ];
    }

    /// <summary>Runs each sequence alone through the plain-loop reference.</summary>
    public static void EachAlone(ModelConfig c, RandomWeights weights, IEnumerable<SequenceState> sequences)
    {
        using var model = ResidentModel.Load(weights, c, ScalarType.Float32, CPU);
        foreach (var s in sequences) BatchGenerator.Run(model, [s], Decode);
    }

    /// <summary>
    /// <see cref="LongAndShort"/> sequences through an engine of <paramref name="policy"/> (CPU, float32, generous tiers) give
    /// the tokens each gives alone; <paramref name="check"/> sees the engine after the run.
    /// </summary>
    public static void AssertLongAndShortAsAlone(ModelConfig c, int longLength, int longTokens, int shortTokens, Policy policy,
        DecodeAttention decode = DecodeAttention.Products, bool cudaGraphs = false, Action<OffloadRuntime>? check = null)
    {
        using var source = new RandomWeights(c, seed: 7);
        var expected = LongAndShort(c, longLength, longTokens, shortTokens);
        EachAlone(c, source, expected);
        var actual = LongAndShort(c, longLength, longTokens, shortTokens);
        var tiers = TierSet.Create(Generous, Generous, null, 0);
        using (var copies = new CpuCopyEngine())
        using (var engine = new OffloadRuntime(c, source, policy, tiers, copies, ScalarType.Float32, decodeAttention: decode, cudaGraphs: cudaGraphs))
        {
            engine.Generate(actual, Decode);
            check?.Invoke(engine);
        }
        Assert.Equal(expected.Select(s => s.OutputIds), actual.Select(s => s.OutputIds));
    }

    public static string TempFolder()
    {
        var path = Path.Combine(Path.GetTempPath(), "actorinfer-runtime-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(path);
        return path;
    }

    /// <summary>TorchSharp's live-tensor count of this thread, found by reflection (null when this version has none).</summary>
    public static long? LiveTensors()
    {
        var manager = typeof(Tensor).Assembly.GetType("TorchSharp.DisposeScopeManager");
        var stats = manager?.GetProperty("Statistics", BindingFlags.Public | BindingFlags.Static)?.GetValue(null);
        var live = stats?.GetType().GetProperty("ThreadTotalLiveCount")?.GetValue(stats);
        return live is null ? null : Convert.ToInt64(live);
    }

    /// <summary>Tensors TorchSharp has created on this thread so far, in and outside dispose scopes (null when this version counts none).</summary>
    public static long? CreatedTensors()
    {
        var manager = typeof(Tensor).Assembly.GetType("TorchSharp.DisposeScopeManager");
        var stats = manager?.GetProperty("Statistics", BindingFlags.Public | BindingFlags.Static)?.GetValue(null);
        var tensors = stats?.GetType().GetProperty("TensorStatistics")?.GetValue(stats);
        var inScope = tensors?.GetType().GetProperty("CreatedInScopeCount")?.GetValue(tensors);
        var outside = tensors?.GetType().GetProperty("CreatedOutsideScopeCount")?.GetValue(tensors);
        return inScope is null || outside is null ? null : Convert.ToInt64(inScope) + Convert.ToInt64(outside);
    }

    public static void AssertAllFreed(TierSet tiers)
    {
        foreach (var tier in tiers.All())
        {
            Assert.Equal(0, tier.BytesHeld);
            Assert.Equal(0, tier.LiveLeases);
        }
    }
}
