using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.CpuAttention;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

/// <summary>CPU attention in flight between positions: driven one position at a time, and abandoned mid-step.</summary>
public sealed class PendingCpuAttentionTests
{
    private static readonly Policy CpuCache = new(2, 3, TierFractions.AllGpu, TierFractions.AllCpu, TierFractions.AllCpu) { CpuAttention = true };

    [Fact]
    public void AttentionStaysInFlightUntilTheNextPositionAndTheStepMatchesTheReference()
    {
        var config = TestConfigs.PreLn;
        using var source = new RandomWeights(config, seed: 7);
        var expected = Harness.Reference(config, source, 5);
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
        var sequences = Harness.Sequences(config, 5);
        using (var copies = new CpuCopyEngine())
        using (var engine = new OffloadEngine(config, source, CpuCache, tiers, copies, ScalarType.Float32) { CpuAttentionKernel = CpuAttentionKernel.Parse("Float32:4:2") })
        using (var session = engine.OpenBlock(sequences, Harness.Decode))
        {
            session.RunStep(new TokenStep(0));
            for (var step = new TokenStep(1); sequences.Any(s => !s.IsFinished); step = step.Next())
            {
                session.Begin(step, [0, 1, 2]);
                for (var layer = 0; layer < session.ScheduleLayers; layer++)
                    for (var batch = 0; batch < 3; batch++)
                    {
                        session.Run(layer, batch);
                        var decoder = layer >= 1 && layer <= config.NumHiddenLayers;
                        // Each decoder position leaves its attention running on the worker, joined at the next position.
                        Assert.Equal(decoder, session.CpuAttentionInFlight);
                    }
                Assert.False(session.InStep);
            }
        }
        Harness.AssertAllFreed(tiers);
        for (var i = 0; i < sequences.Count; i++) Assert.Equal(expected[i].OutputIds, sequences[i].OutputIds);
    }

    [Fact]
    public void AStepAbandonedWithAttentionInFlightGivesEveryBufferBack()
    {
        var config = TestConfigs.PreLn;
        using var source = new RandomWeights(config, seed: 7);
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
        var liveBefore = Harness.LiveTensors();
        using (var copies = new CpuCopyEngine())
        using (var engine = new OffloadEngine(config, source, CpuCache, tiers, copies, ScalarType.Float32) { CpuAttentionKernel = CpuAttentionKernel.Parse("Float32Matmul:4") })
        {
            using (var session = engine.OpenBlock(Harness.Sequences(config, 5), Harness.Decode))
            {
                session.RunStep(new TokenStep(0));
                session.Begin(new TokenStep(1), [0, 1, 2]);
                for (var batch = 0; batch < 3; batch++) session.Run(0, batch);
                // The last batch of a layer: its attention finishes with this layer's weights at the next layer's first position.
                for (var batch = 0; batch < 3; batch++) session.Run(1, batch);
                Assert.True(session.CpuAttentionInFlight);
                session.EndStep();
                Assert.False(session.CpuAttentionInFlight);
                Assert.False(session.InStep);
            }
            foreach (var tier in tiers.All())
                Assert.Equal(engine.WeightPlan.Weights.Of(tier.Kind), tier.BytesHeld);
        }
        Harness.AssertAllFreed(tiers);
        if (liveBefore is { } before) Assert.Equal(before, Harness.LiveTensors());
    }
}
