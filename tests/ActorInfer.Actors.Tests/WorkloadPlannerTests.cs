using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using Akka.Actor;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;
using static TorchSharp.torch;
using Tier = ActorInfer.Actors.Memory.Tier;

namespace ActorInfer.Actors.Tests;

/// <summary>The node's planner: workload buckets, the search for each, and blocks that take the requests of their bucket.</summary>
public sealed class WorkloadPlannerTests : IDisposable
{
    private readonly DummyWeightSource _source = new(TestModels.Tiny, 3);
    private readonly CpuCopyEngine _copies = new();
    private readonly OffloadRuntime _runtime;

    public WorkloadPlannerTests()
    {
        var all = TierFractions.AllGpu;
        _runtime = new OffloadRuntime(TestModels.Tiny, _source, new Policy(1, 1, all, all, all), TierSet.Create(1L << 30, 1L << 30, null, 0), _copies,
            ScalarType.Float32);
    }

    public void Dispose()
    {
        _runtime.Dispose();
        _copies.Dispose();
        _source.Dispose();
    }

    private WorkloadPlanner Planner(Tier deviceBudget, bool wholeContext = false, int maxGpuBatchSize = 8, int maxGpuBatches = 4) =>
        new(_runtime, HardwareProfiles.T4FlexGen, "built-in", PlannerSettings.Default with { WholeContext = wholeContext },
            maxGpuBatchSize, maxGpuBatches, deviceBudget);

    [Theory]
    // Contexts round up to powers of two from 16, generation lengths from 8, within the tiny model's context of 48.
    [InlineData(1, 1, 16, 8)]
    [InlineData(16, 8, 16, 8)]
    [InlineData(17, 9, 32, 16)]
    [InlineData(40, 5, 47, 1)]
    [InlineData(20, 30, 32, 16)]
    public void Buckets_round_lengths_up_within_the_context(int context, int remaining, int prompt, int generation) =>
        Assert.Equal(new WorkloadBucket(prompt, generation), new BucketRule(48).For(context, remaining));

    [Theory]
    // Dropped five tokens past a 512-token prompt: 520 tokens of context, not 1,024; a fresh request as before.
    [InlineData(2048, 512, 5, 27, 520, 32)]
    [InlineData(2048, 512, 0, 32, 512, 32)]
    [InlineData(2048, 500, 20, 12, 536, 16)]
    // Never past the bucket the whole context rounds to, nor the model's context.
    [InlineData(2048, 10, 3, 5, 16, 8)]
    [InlineData(48, 40, 5, 2, 47, 1)]
    public void A_resumed_sequence_is_planned_for_its_prompt_s_bucket_widened_by_what_it_generated(int maxContext, int prompt, int generated,
        int remaining, int plannedPrompt, int plannedGeneration)
    {
        var rule = new BucketRule(maxContext);
        var bucket = rule.ForResumed(prompt, generated, remaining);
        Assert.Equal(new WorkloadBucket(plannedPrompt, plannedGeneration), bucket);
        Assert.True(bucket.PromptLength >= Math.Min(prompt + generated, maxContext - 1));
        Assert.True(BucketRule.Fits(bucket, rule.For(prompt + generated, remaining)));
        Assert.Equal(rule.Whole, new BucketRule(maxContext, WholeContext: true).ForResumed(prompt, generated, remaining));
    }

    [Fact]
    public void The_whole_context_rule_puts_every_request_in_one_bucket_that_holds_any_of_them()
    {
        var rule = new BucketRule(48, WholeContext: true);
        Assert.Equal(rule.Whole, rule.For(3, 2));
        Assert.Equal(rule.Whole, rule.For(40, 7));
        Assert.Equal(new WorkloadBucket(47, 1), rule.Whole);
        Assert.True(BucketRule.Fits(new WorkloadBucket(16, 8), new WorkloadBucket(32, 8)));
        Assert.False(BucketRule.Fits(new WorkloadBucket(16, 16), new WorkloadBucket(32, 8)));
    }

    [Fact]
    public void A_cpu_node_plans_the_largest_geometry_whose_placement_fits_the_host_budget()
    {
        var planner = Planner(Tier.Cpu);
        var bucket = new WorkloadBucket(16, 8);
        var largest = planner.BytesFor(8, 4, bucket);
        var policy = planner.Plan(new TierBudgets(0, largest, 0), bucket)!;
        Assert.Equal((8, 4), (policy.GpuBatchSize, policy.NumGpuBatches));
        Assert.Equal(bucket, policy.Bucket);
        Assert.NotNull(policy.PredictedTokensPerSecond);
        // One byte less and the block no longer holds 32 sequences; what the planner picks instead fits.
        var smaller = planner.Plan(new TierBudgets(0, largest - 1, 0), bucket)!;
        Assert.True(smaller.BlockSize < 32);
        Assert.True(planner.BytesFor(smaller.GpuBatchSize, smaller.NumGpuBatches, bucket) <= largest - 1);
        Assert.Null(planner.Plan(new TierBudgets(0, planner.BytesFor(1, 1, bucket) - 1, 0), bucket));
    }

    [Fact]
    public void Planning_for_the_queued_lengths_gives_larger_blocks_than_planning_for_the_whole_context()
    {
        var byLength = Planner(Tier.Cpu);
        var whole = Planner(Tier.Cpu, wholeContext: true);
        var budget = new TierBudgets(0, whole.BytesFor(2, 1), 0);
        var short_ = byLength.Plan(budget, byLength.Buckets.For(10, 5))!;
        var planned = whole.Plan(budget, whole.Buckets.For(10, 5))!;
        Assert.Equal(2, planned.BlockSize);
        Assert.True(short_.BlockSize > planned.BlockSize, $"{short_} against {planned}");
    }

    [Fact]
    public void A_gpu_node_plans_what_the_offloading_search_corrected_to_the_runtime_gives()
    {
        var planner = Planner(Tier.Gpu, maxGpuBatchSize: 64, maxGpuBatches: 8);
        var bucket = new WorkloadBucket(32, 16);
        var budgets = new TierBudgets(1L << 30, 1L << 30, 0);
        var policy = planner.Plan(budgets, bucket)!;
        var usable = new FittingSearch.Budget(WorkloadPlanner.RoundDown((1L << 30) - DeviceReserve.AllowanceFor(1L << 30)),
            WorkloadPlanner.RoundDown(1L << 30), 1);
        var direct = FittingSearch.Find(ModelSpecMapper.From(TestModels.Tiny, 4), new Workload(32, 16), HardwareProfiles.T4FlexGen,
            new SearchOptions { MaxBlockSize = PlannerSettings.Default.MaxBlockSize, MaxGpuBatchSize = 64, MaxNumGpuBatches = 8, CpuAttention = null },
            usable, p => _runtime.WithHostCopies(_runtime.PlanBlock(p, 32, 48)));
        Assert.Equal(direct.Policy, policy.Runtime);
        Assert.Equal(direct.Estimate.ThroughputTokensPerSecond, policy.PredictedTokensPerSecond);
    }

    [Fact]
    public void Answers_kept_per_exact_budget_are_bounded_and_searched_again_the_same()
    {
        // A CPU node's budgets are taken as they are: every new one is a new answer.
        var planner = new WorkloadPlanner(_runtime, HardwareProfiles.T4FlexGen, "built-in", PlannerSettings.Default, 8, 4, Tier.Cpu, mostKept: 4);
        var bucket = new WorkloadBucket(32, 16);
        var first = planner.Plan(new TierBudgets(0, 1L << 30, 0), bucket);
        Assert.NotNull(first);
        for (var i = 1; i <= 10; i++)
        {
            Assert.NotNull(planner.Plan(new TierBudgets(0, (1L << 30) + i * 4096, 0), bucket));
            Assert.True(planner.Kept.Answers <= 4, $"{planner.Kept.Answers} answers kept after {i + 1} budgets");
        }
        Assert.Equal(11, planner.Searches);
        // The first budget's answer was let go: searched again, the same policy.
        var again = planner.Plan(new TierBudgets(0, 1L << 30, 0), bucket);
        Assert.Equal(12, planner.Searches);
        Assert.Equal(first!.Runtime, again!.Runtime);
        Assert.Equal(first.PredictedTokensPerSecond, again.PredictedTokensPerSecond);
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            new WorkloadPlanner(_runtime, HardwareProfiles.T4FlexGen, "built-in", PlannerSettings.Default, 8, 4, Tier.Cpu, mostKept: 0));
    }

    /// <summary>
    /// A GPU budget 131 KiB above the allocator's allowance: the linear solver cannot settle some candidates' programs (their
    /// memory terms are a thousand times the budget); those are taken as not fitting, and the search still answers.
    /// </summary>
    [Fact]
    public void A_budget_barely_above_the_allocator_s_allowance_is_answered_not_failed()
    {
        var planner = Planner(Tier.Gpu, maxGpuBatchSize: 64, maxGpuBatches: 8);
        var budget = DeviceReserve.AllowanceFor(0) + 134_144;
        var policy = planner.Plan(new TierBudgets(budget, 1L << 30, 0));
        Assert.True(policy is null || policy.Runtime!.Weights.Gpu < 1, $"{policy}");
    }

    /// <summary>A planner with room for large blocks, a bucket, and a 2 x 3 policy with a fifth of its weights on the device.</summary>
    private (WorkloadPlanner Planner, WorkloadBucket Bucket, Policy Placed) RaiseSetup()
    {
        var cpu = TierFractions.AllCpu;
        return (Planner(Tier.Gpu, maxGpuBatchSize: 64, maxGpuBatches: 8), new WorkloadBucket(32, 16),
            new Policy(2, 3, new TierFractions(0.2, 0.8, 0), cpu, cpu) { CpuAttention = true });
    }

    /// <summary>The device's bytes of a block of the raise tests' bucket under a policy.</summary>
    private long DeviceBytes(Policy p) => _runtime.WithHostCopies(_runtime.PlanBlock(p, 32, 48)).Device;

    [Fact]
    public void Raising_a_firm_policy_puts_more_of_its_weights_on_the_device_and_keeps_the_rest_of_it()
    {
        var (planner, bucket, placed) = RaiseSetup();
        var firm = new BlockPolicy(2, 3, "firm") { Runtime = placed, Bucket = bucket, PredictedTokensPerSecond = 1 };
        var least = DeviceBytes(placed);
        var most = DeviceBytes(placed.Reshaped(2, 3, TierFractions.AllGpu));
        Assert.True(most > least + 1000, $"{most} against {least}");
        // A budget whose usable bytes lie halfway between the firm placement and all the weights on the device.
        var usable = (least + most) / 2;
        var budget = usable + DeviceReserve.AllowanceFor(usable + (512L << 20)) + 1024;
        var raised = planner.Raise(firm, new TierBudgets(budget, 1L << 30, 0));
        var r = raised.Runtime!;
        Assert.True(r.Weights.Gpu > 0.2 && r.Weights.Gpu < 1, r.Weights.ToString());
        // Geometry, cache, activations and attention are the firm policy's.
        Assert.Equal(placed.Reshaped(2, 3, r.Weights), r);
        Assert.Equal((2, 3, bucket), (raised.GpuBatchSize, raised.NumGpuBatches, raised.Bucket));
        Assert.True(DeviceBytes(r) <= WorkloadPlanner.RoundDown(budget - DeviceReserve.AllowanceFor(budget)));
        Assert.True(raised.PredictedTokensPerSecond > 1);
        // One percent more would not fit; all of them fit a budget that holds them; no room at all leaves the firm policy.
        var next = r.Weights.Gpu + 0.01;
        Assert.True(DeviceBytes(placed.Reshaped(2, 3, new TierFractions(next, 1 - next, 0))) > WorkloadPlanner.RoundDown(budget - DeviceReserve.AllowanceFor(budget)));
        Assert.Equal(TierFractions.AllGpu, planner.Raise(firm, new TierBudgets(1L << 30, 1L << 30, 0)).Runtime!.Weights);
        Assert.Same(firm, planner.Raise(firm, new TierBudgets(least / 2 + (512L << 20), 1L << 30, 0)));
    }

    /// <summary>
    /// Raised into a budget, weights spread over the model take the largest whole percent that fits, though their bytes fall
    /// where a tensor kind completes (the buffer of the layer with the most off the device shrinks only then). (How much
    /// more of a budget they hold than FlexGen's rule at OPT-30B's shape: <c>WeightRealizationTests</c>.)
    /// </summary>
    [Fact]
    public void Raised_weights_spread_over_the_model_take_the_largest_share_that_fits()
    {
        var (planner, bucket, byRule) = RaiseSetup();
        var spread = byRule with { SpreadWeights = true };
        var least = Math.Max(DeviceBytes(byRule), DeviceBytes(spread));
        var most = DeviceBytes(byRule.Reshaped(2, 3, TierFractions.AllGpu));
        for (var step = 1; step < 20; step++)
        {
            var usable = least + (most - least) * step / 20;
            var budget = usable + DeviceReserve.AllowanceFor(usable + (512L << 20)) + 1024;
            var room = WorkloadPlanner.RoundDown(budget - DeviceReserve.AllowanceFor(budget));
            BlockPolicy Raised(Policy p) => planner.Raise(new BlockPolicy(2, 3, "firm") { Runtime = p, Bucket = bucket, PredictedTokensPerSecond = 1 },
                new TierBudgets(budget, 1L << 30, 0));
            var raised = Raised(spread).Runtime!;
            Assert.True(raised.SpreadWeights);
            var held = DeviceBytes(raised);
            Assert.True(held <= room, $"{held} B held against {room} B of room");
            for (var percent = (int)Math.Round(raised.Weights.Gpu * 100) + 1; percent <= 100; percent++)
                Assert.True(DeviceBytes(spread.Reshaped(2, 3, TierFractions.FromPercent(percent, 100 - percent))) > room,
                    $"{percent}% fits {room} B of room, but {raised.Weights} was taken");
        }
    }

    /// <summary>
    /// A node's runtime, made with its weights on one tier, stacks each layer's Q, K and V into one tensor, which then moves
    /// as one: the planner's search counts that tensor, not the three apart (counting them apart, its placements were not
    /// the runtime's, and OPT-30B found no policy under a 35.82 GiB share; StackedWeightsPlanTests).
    /// </summary>
    [Fact]
    public void The_planner_counts_the_runtimes_own_tensors()
    {
        var attention = Planner(Tier.Gpu).Model.WeightLayout.Layer[0];
        var apart = Runtime.Placement.ModelSpecs.From(TestModels.Tiny, 4).WeightLayout.Layer[0];
        long hidden = TestModels.Tiny.HiddenSize;
        Assert.Contains(3 * hidden * hidden, attention);
        Assert.DoesNotContain(3 * hidden * hidden, apart);
        Assert.Equal(apart.Sum(), attention.Sum());
        // Q, K and V weights and biases: six tensors apart, two stacked.
        Assert.Equal(apart.Count - 4, attention.Count);
    }

    [Fact]
    public async Task A_budget_change_after_the_disk_telemetry_moved_is_answered_from_the_compiled_table()
    {
        var folder = Directory.CreateTempSubdirectory("actorinfer-table-").FullName;
        try
        {
            var all = TierFractions.AllGpu;
            using var runtime = new OffloadRuntime(TestModels.Tiny, _source, new Policy(1, 1, all, all, all),
                TierSet.Create(1L << 30, 1L << 30, folder, 64L << 30), _copies, ScalarType.Float32);
            var planner = new WorkloadPlanner(runtime, HardwareProfiles.T4FlexGen, "built-in", PlannerSettings.Default, 64, 8, Tier.Gpu,
                deviceTotal: 4L << 30);
            var bucket = new WorkloadBucket(32, 16);
            // The first plan compiles the bucket's table in the background (and searches its own answer).
            Assert.NotNull(planner.Plan(new TierBudgets(4L << 30, 1L << 30, 60L << 30), bucket));
            await planner.Compiled(bucket).WaitAsync(TimeSpan.FromMinutes(2));
            var searches = planner.Searches;
            // The node wrote a few megabytes (the disk's free space moved), then the GPU budget fell: a lookup, no search.
            var fallen = planner.Plan(new TierBudgets(2L << 30, 1L << 30, (60L << 30) - (7L << 20)), bucket);
            Assert.NotNull(fallen);
            Assert.Equal(searches, planner.Searches);
            // More disk is covered too; a sixteenth less than at the compiling is not (searched, and the table recompiled).
            planner.Plan(new TierBudgets(3L << 30, 1L << 30, 63L << 30), bucket);
            Assert.Equal(searches, planner.Searches);
            planner.Plan(new TierBudgets(3L << 30, 1L << 30, 50L << 30), bucket);
            Assert.Equal(searches + 1, planner.Searches);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static WorkItem Item(string key, int promptTokens, int maxTokens) =>
        new(key, key, new CompletionRequest { Prompt = Prompt.FromIds(Enumerable.Range(2, promptTokens).ToArray()), MaxTokens = maxTokens }, 0);

    /// <summary>
    /// A short request at the head joins the block of the planned (longer) bucket when requests of that bucket wait behind it,
    /// instead of running a block of its own first; with none of them waiting, the head's own bucket is planned.
    /// </summary>
    [Fact]
    public void A_short_request_at_the_head_joins_the_planned_bucket_when_requests_of_it_wait()
    {
        var rule = new BucketRule(48);
        var work = new WaitingWork(i => rule.For(i.Request.Prompt.TokenIds!.Count, i.Request.MaxTokens));
        var planned = new WorkloadBucket(32, 8);
        Assert.Null(work.NextBucket(planned));
        work.Add(Item("short", 5, 4), ActorRefs.Nobody);
        // Nothing of the planned bucket waits: the head's own bucket.
        Assert.Equal(new WorkloadBucket(16, 8), work.NextBucket(planned));
        Assert.Equal(new WorkloadBucket(16, 8), work.NextBucket(null));
        work.Add(Item("long", 30, 4), ActorRefs.Nobody);
        Assert.Equal(planned, work.NextBucket(planned));
        Assert.Equal("short,long", string.Join(",", work.Take(5, work.NextBucket(planned)).Select(i => i.Item.Key)));
        // A planned bucket that does not hold the head is not kept, whatever waits behind it.
        work.Add(Item("long-gen", 5, 20), ActorRefs.Nobody);
        work.Add(Item("long-2", 30, 4), ActorRefs.Nobody);
        Assert.Equal(new WorkloadBucket(16, 32), work.NextBucket(planned));
    }

    [Fact]
    public void A_block_takes_the_waiting_requests_that_fit_its_bucket_and_the_others_keep_their_places()
    {
        var rule = new BucketRule(48);
        var work = new WaitingWork(i => rule.For(i.Request.Prompt.TokenIds!.Count, i.Request.MaxTokens));
        work.Add(Item("long", 30, 4), ActorRefs.Nobody);
        work.Add(Item("short", 5, 4), ActorRefs.Nobody);
        work.Add(Item("long-gen", 5, 20), ActorRefs.Nobody);
        work.Add(Item("short-2", 12, 8), ActorRefs.Nobody);
        Assert.Equal(new WorkloadBucket(32, 8), work.HeadBucket);
        Assert.Equal("short,short-2", string.Join(",", work.Take(5, new WorkloadBucket(16, 8)).Select(i => i.Item.Key)));
        Assert.Equal("long,long-gen", string.Join(",", work.Take(5).Select(i => i.Item.Key)));
    }
}
