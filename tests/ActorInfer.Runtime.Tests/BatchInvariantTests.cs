using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

/// <summary>
/// A batch-invariant runtime gives each sequence the same tokens and the same log-probabilities, bit for bit, alone or
/// in any block: other GPU batch sizes, other paddings, its cache and attention on the device or the CPU.
/// </summary>
public sealed class BatchInvariantTests
{
    private static readonly TierFractions Gpu = TierFractions.AllGpu, Cpu = TierFractions.AllCpu, Half = new(0.5, 0.5, 0);

    public static TheoryData<string> Models() => ["pre-ln", "llama"];

    [Theory]
    [MemberData(nameof(Models))]
    public void Each_sequence_gets_its_own_bits_in_any_block(string model)
    {
        ModelConfig config = model == "llama" ? TestConfigs.Llama : TestConfigs.PreLn;
        using var source = new RandomWeights(config, seed: 7);
        const int count = 7;
        var alone = new List<SequenceState>();
        for (var i = 0; i < count; i++)
        {
            var one = Sequences(config)[i];
            Run(config, source, new Policy(1, 1, Gpu, Gpu, Gpu), [one]);
            alone.Add(one);
        }
        (string Name, Policy Policy)[] blocks =
        [
            ("all device 4x2", new Policy(4, 2, Gpu, Gpu, Gpu)),
            ("cache on the CPU, CPU attention 3x3", new Policy(3, 3, Gpu, Cpu, Gpu) { CpuAttention = true }),
            ("halves, device attention 7x1", new Policy(7, 1, Half, Half, Half)),
        ];
        foreach (var (name, policy) in blocks)
        {
            var together = Sequences(config);
            Run(config, source, policy, together);
            for (var i = 0; i < count; i++)
            {
                Assert.Equal(alone[i].OutputIds, together[i].OutputIds);
                Assert.Equal(Bits(alone[i].OutputLogprobs), Bits(together[i].OutputLogprobs));
                Assert.Equal(Bits(alone[i].PromptLogprobs!.Skip(1).Select(l => l!.Value)), Bits(together[i].PromptLogprobs!.Skip(1).Select(l => l!.Value)));
            }
        }
    }

    private static int[] Bits(IEnumerable<float> values) => [.. values.Select(BitConverter.SingleToInt32Bits)];

    // Prompts of 2 to 10 tokens, every one asking for its log-probabilities.
    private static List<SequenceState> Sequences(ModelConfig c) => [.. Harness.Sequences(c, 7, maxTokens: 6).Select(s =>
    {
        var request = s.Request with { Logprobs = 1, Echo = true };
        return new SequenceState(request, s.PromptIds, seed: 0, c.EosTokenId);
    })];

    private static void Run(ModelConfig config, RandomWeights source, Policy policy, List<SequenceState> sequences)
    {
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
        using var copies = new CpuCopyEngine();
        using var engine = new OffloadRuntime(config, source, policy, tiers, copies, ScalarType.Float32, batchInvariant: true);
        Assert.True(engine.BatchInvariant);
        engine.Generate(sequences, Harness.Decode);
    }
}
