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

    /// <summary>A runtime of the tiny model, all on the device, and its planner with the compilation finished.</summary>
    private sealed class Compiled : IDisposable
    {
        private readonly DummyWeightSource _source = new(TestModels.Tiny, 3);
        private readonly CpuCopyEngine _copies = new();

        private Compiled(int gpuBatchSize, int numGpuBatches)
        {
            var all = TierFractions.AllGpu;
            Tiers = TierSet.Create(1L << 30, 1L << 30, null, 0);
            Runtime = new OffloadRuntime(TestModels.Tiny, _source, new Policy(gpuBatchSize, numGpuBatches, all, all, all), Tiers, _copies, ScalarType.Float32);
            Planner = new RuntimePlacementPlanner(Runtime, Runtime.Policy, PromptLength, PromptLength + Generate, ActorInfer.Actors.Memory.Tier.Gpu);
        }

        public TierSet Tiers { get; }
        public OffloadRuntime Runtime { get; }
        public RuntimePlacementPlanner Planner { get; }

        public static async Task<Compiled> Start(int gpuBatchSize, int numGpuBatches)
        {
            var compiled = new Compiled(gpuBatchSize, numGpuBatches);
            await compiled.Planner.Compiled;
            return compiled;
        }

        public void Dispose()
        {
            Runtime.Dispose();
            _copies.Dispose();
            _source.Dispose();
        }
    }

    /// <summary>
    /// A requeued sequence that had generated all but one token resumes beside a fresh one: their batch's cache runs
    /// from the longer context to the fresh one's last token. A device budget of what the planner plans for such a
    /// batch must hold it (it once planned for the capacity alone, and such a block then ran the device out of memory).
    /// </summary>
    [Fact]
    public async Task A_block_mixing_a_resumed_sequence_with_a_fresh_one_fits_what_the_planner_planned()
    {
        using var compiled = await Compiled.Start(gpuBatchSize: 2, numGpuBatches: 1);
        var (tiers, runtime, planner) = (compiled.Tiers, compiled.Runtime, compiled.Planner);

        var budget = planner.BytesFor(2, 1);
        var policy = planner.Plan(new TierBudgets(budget, 1L << 30, 0));
        Assert.NotNull(policy);
        Assert.Equal(2, policy!.BlockSize);

        tiers.Device.SetBudget(budget);
        using var session = runtime.OpenBlock([Sequence(0, generated: Generate - 1), Sequence(1, generated: 0)], ids => "", gpuBatchSize: 2);
        Assert.True(tiers.Device.BytesHeld <= budget, $"the block holds {tiers.Device.BytesHeld} bytes over the planned {budget}");
    }

    /// <summary>
    /// Planning at run time reads a table the compilation filled (the search's answer at each candidate's device
    /// footprint): for every budget between, at and around the footprints it answers what the search answers, and where
    /// the CPU budget is short of some candidate's it searches.
    /// </summary>
    [Fact]
    public async Task The_compiled_table_answers_what_the_search_answers_for_every_budget()
    {
        using var compiled = await Compiled.Start(gpuBatchSize: 4, numGpuBatches: 3);
        var planner = compiled.Planner;

        var smallest = planner.Smallest.Device;
        var largest = planner.LargestBlockBytes;
        var random = new Random(11);
        var budgets = new List<long> { 0, 1, smallest - 1, smallest, smallest + 1, largest - 1, largest, largest + 1, 4 * largest };
        for (var i = 0; i < 400; i++) budgets.Add(smallest / 2 + (long)(random.NextDouble() * (largest * 1.2 - smallest / 2)));
        var distinct = new HashSet<string>();
        foreach (var device in budgets)
            foreach (var cpu in new[] { 0L, 1L << 30, 1 })
            {
                var b = new TierBudgets(device, cpu, 0);
                var planned = planner.Plan(b);
                Assert.Equal(planner.Search(b), planned);
                distinct.Add(planned?.ToString() ?? "none");
            }
        // The budgets cross several answers (so the table is read at more than one entry), none of them among them.
        Assert.Contains("none", distinct);
        Assert.True(distinct.Count >= 4, $"only {distinct.Count} distinct answers");
    }
}
