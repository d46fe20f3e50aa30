using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Actors.Tests;

/// <summary>The runtime planner's footprints against the blocks the scheduler actually opens.</summary>
public sealed class RuntimePlannerTests
{
    private const int PromptLength = 8, Generate = 9;

    private static SequenceState Sequence(int i, int generated)
    {
        var ids = Enumerable.Range(0, PromptLength).Select(j => 2 + (i * 11 + j) % 90).ToArray();
        var request = new CompletionRequest { Prompt = Prompt.FromIds(ids), MaxTokens = Generate, Temperature = 0, IgnoreEos = true };
        var state = new SequenceState(request, ids, seed: i, TestModels.Tiny.EosTokenId);
        if (generated > 0) state.Restore(Enumerable.Range(0, generated).Select(t => 3 + t).ToArray(), new float[generated]);
        return state;
    }

    /// <summary>
    /// A requeued sequence that had generated all but one token resumes beside a fresh one: their batch's cache runs
    /// from the longer context to the fresh one's last token. A device budget of what the planner plans for such a
    /// batch must hold it (it once planned for the capacity alone, and such a block then ran the device out of memory).
    /// </summary>
    [Fact]
    public async Task A_block_mixing_a_resumed_sequence_with_a_fresh_one_fits_what_the_planner_planned()
    {
        using var source = new DummyWeightSource(TestModels.Tiny, 3);
        var all = TierFractions.AllGpu;
        var tiers = TierSet.Create(1L << 30, 1L << 30, null, 0);
        using var copies = new CpuCopyEngine();
        using var runtime = new OffloadEngine(TestModels.Tiny, source, new Policy(2, 1, all, all, all), tiers, copies, ScalarType.Float32);
        var planner = new RuntimePlacementPlanner(runtime, runtime.Policy, PromptLength, PromptLength + Generate, ActorInfer.Actors.Memory.Tier.Gpu);
        await planner.Compiled;

        var budget = planner.BytesFor(2, 1);
        var policy = planner.Plan(new TierBudgets(budget, 1L << 30, 0));
        Assert.NotNull(policy);
        Assert.Equal(2, policy!.BlockSize);

        tiers.Device.SetBudget(budget);
        using var session = runtime.OpenBlock([Sequence(0, generated: Generate - 1), Sequence(1, generated: 0)], ids => "", gpuBatchSize: 2);
        Assert.True(tiers.Device.BytesHeld <= budget, $"the block holds {tiers.Device.BytesHeld} bytes over the planned {budget}");
    }
}
