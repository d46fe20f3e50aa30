using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Placement;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

/// <summary>A layer whose weights all live whole on the device is loaded once, not once per step.</summary>
public sealed class ResidentWeightsTests
{
    private static readonly TierFractions Gpu = TierFractions.AllGpu, Cpu = TierFractions.AllCpu;

    [Fact]
    public void A_layer_on_the_device_loads_as_the_same_weights_every_time_and_one_on_the_cpu_anew()
    {
        var config = TestConfigs.PreLn;
        using var source = new RandomWeights(config, seed: 7);
        var layers = ScheduleLayer.For(config, source);
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
        using (var copies = new CpuCopyEngine())
        {
            foreach (var (weights, kept) in new[] { (Gpu, true), (Cpu, false), (new TierFractions(0.5, 0.5, 0), false) })
            {
                var plan = PlacementPlan.ForWeights(layers, new Policy(1, 1, weights, Gpu, Gpu), 4, deviceIsCpu: true);
                using var store = new WeightStore(layers, plan, source, tiers, ScalarType.Float32);
                using var transfers = new Transfers(copies, tiers);
                var first = store.Load(new LayerIndex(1), transfers);
                transfers.Complete();
                var records = first.Decoder(config.Architecture, ScalarType.Float32);
                first.Dispose();
                var second = store.Load(new LayerIndex(1), transfers);
                transfers.Complete();
                Assert.Equal(kept, ReferenceEquals(first, second));
                // Kept weights outlive their users' disposal, with the records built over them.
                if (kept) Assert.Same(records, second.Decoder(config.Architecture, ScalarType.Float32));
                second.Dispose();
            }
        }
        Harness.AssertAllFreed(tiers);
    }

    [Fact]
    public void Weights_kept_on_the_device_are_let_go_when_they_move_and_blocks_compute_from_their_new_homes()
    {
        var config = TestConfigs.PreLn;
        using var source = new RandomWeights(config, seed: 7);
        var expected = Harness.Reference(config, source, 5);
        var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
        using (var copies = new CpuCopyEngine())
        using (var engine = new OffloadRuntime(config, source, new Policy(2, 3, Gpu, Gpu, Gpu), tiers, copies, ScalarType.Float32))
        {
            IEnumerable<IReadOnlyList<float>>? logprobs = null;
            foreach (var weights in new[] { Gpu, Cpu, Gpu })
            {
                engine.Replace(new Policy(2, 3, weights, Gpu, Gpu));
                var actual = Harness.Sequences(config, 5);
                engine.Generate(actual, Harness.Decode);
                Assert.Equal(expected.Select(s => s.OutputIds), actual.Select(s => s.OutputIds));
                // The same geometry computes the same bits wherever the weights live.
                logprobs ??= actual.Select(s => s.OutputLogprobs).ToArray();
                Assert.Equal(logprobs, actual.Select(s => s.OutputLogprobs));
            }
        }
        Harness.AssertAllFreed(tiers);
    }
}
