using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using Akka.Actor;
using Akka.TestKit.Xunit2;
using static ActorInfer.Actors.Planner.PlannerProtocol;

namespace ActorInfer.Actors.Tests;

public sealed class PlannerSpecs() : TestKit(TestModels.ActorConfig)
{
    // 1000 bytes of weights, 100 per sequence: a budget of 1000 + 100 n fits n sequences.
    private static readonly ResidentPolicyPlanner Planner = new(new ModelFootprint(1000, 60, 40), Tier.Gpu, maxGpuBatchSize: 4, maxGpuBatches: 3);

    [Theory]
    [InlineData(1099, null, null)]
    [InlineData(1100, 1, 1)]
    [InlineData(1300, 3, 1)]
    [InlineData(1800, 4, 2)]
    [InlineData(100_000, 4, 3)]
    public void The_resident_planner_grows_the_block_as_the_budget_allows(long gpu, int? batchSize, int? batches)
    {
        var policy = Planner.Plan(new TierBudgets(gpu, 1L << 40, 1L << 40));
        Assert.Equal(batchSize, policy?.GpuBatchSize);
        Assert.Equal(batches, policy?.NumGpuBatches);
    }

    [Fact]
    public void The_largest_block_needs_the_weights_and_every_sequence_of_the_bounds()
    {
        Assert.Equal(1000 + 4 * 3 * 100, Planner.LargestBlockBytes);
        Assert.Equal(new BlockPolicy(4, 3, "all on gpu"), Planner.Plan(new TierBudgets(Planner.LargestBlockBytes, 0, 0)));
        Assert.Equal(new BlockPolicy(4, 2, "all on gpu"), Planner.Plan(new TierBudgets(Planner.LargestBlockBytes - 1, 0, 0)));
    }

    [Fact]
    public void A_footprint_counts_the_weights_of_a_known_model()
    {
        var f = ModelFootprint.Of(ActorInfer.Model.Config.OptConfigs.Named("opt-125m"), 2);
        // OPT-125M has 125.2M parameters (tied head): about 250 MB in fp16.
        Assert.InRange(f.WeightBytes, 245_000_000, 255_000_000);
        Assert.Equal(2L * 12 * 2048 * 768 * 2, f.CacheBytesPerSequence);
    }

    [Fact]
    public void Every_budget_change_is_published_with_the_best_policy_for_it()
    {
        var memory = Sys.ActorOf(MemoryProtocol.Props(new MemoryProtocol.Settings(1800, null, null, TimeSpan.FromHours(1), 1), null));
        var planner = Sys.ActorOf(PlannerProtocol.Props(Planner, memory));
        var a = CreateTestProbe();
        var b = CreateTestProbe();
        // a gives a signal: it is raised once each run-time change is in a's mailbox, and the change says so.
        var signal = new ActorInfer.Runtime.Schedule.ChangeSignal();
        planner.Tell(new Subscribe(a.Ref, signal));
        planner.Tell(new Subscribe(b.Ref));
        // Subscribing before the first budget arrives still yields the first policy.
        foreach (var p in new[] { a, b })
            p.FishForMessage<PolicyChanged>(m => m.Policy == new BlockPolicy(4, 2, "all on gpu"), TimeSpan.FromSeconds(5));

        var before = System.Diagnostics.Stopwatch.GetTimestamp();
        memory.Tell(new MemoryProtocol.SetBudget(Tier.Gpu, 1300));
        foreach (var p in new[] { a, b })
        {
            var changed = p.ExpectMsg<PolicyChanged>();
            changed.Policy.Should(new BlockPolicy(3, 1, "all on gpu"));
            // It carries when the budget changed, so that the time to honour it counts from there.
            Assert.InRange(changed.ChangedAt ?? 0, before, System.Diagnostics.Stopwatch.GetTimestamp());
            Assert.Equal(p == a, changed.Signalled);
        }
        // The first policy (not a run-time change) raised nothing; the change raised a's signal until a takes it.
        AwaitAssert(() => Assert.True(signal.Waiting));
        signal.Received();
        Assert.False(signal.Waiting);

        // A change that leaves the policy as it is is published with the new budgets (the engine applies them to its tiers).
        memory.Tell(new MemoryProtocol.SetBudget(Tier.Gpu, 1350));
        var kept = a.ExpectMsg<PolicyChanged>();
        kept.Policy.Should(new BlockPolicy(3, 1, "all on gpu"));
        Assert.Equal(1350, kept.Budgets.Gpu);
        signal.Received();
        // Budgets the memory actor already holds change nothing, and nothing is published.
        memory.Tell(new MemoryProtocol.SetBudget(Tier.Gpu, 1350));
        a.ExpectNoMsg(TimeSpan.FromMilliseconds(200));

        memory.Tell(new MemoryProtocol.SetBudget(Tier.Gpu, 500));
        a.ExpectMsg<PolicyChanged>().Policy.Should(null);

        planner.Tell(new PlanFor(new TierBudgets(100_000, 0, 0)));
        ExpectMsg<PolicyAnswer>().Policy.Should(new BlockPolicy(4, 3, "all on gpu"));
        planner.Tell(GetPolicy.Instance);
        ExpectMsg<PolicyAnswer>().Policy.Should(null);
    }
}

public sealed class SearchPolicyPlannerSpecs
{
    [Fact]
    public void The_planning_search_answers_through_the_planner_interface()
    {
        var planner = new SearchPolicyPlanner(ActorInfer.Planning.OptModels.Get("opt-6.7b"), new ActorInfer.Planning.Workload(512, 32),
            ActorInfer.Planning.HardwareProfiles.T4FlexGen);
        var roomy = planner.Plan(new TierBudgets(15L << 30, 200L << 30, 1L << 40));
        Assert.NotNull(roomy);
        Assert.True(roomy.BlockSize >= 1);
        Assert.Null(planner.Plan(new TierBudgets(1 << 20, 1 << 20, 1 << 20)));
    }
}

public sealed class BlockPolicyTests
{
    /// <summary>After the device ran out of memory: half the GPU batches first, then half the batch; nothing below one sequence.</summary>
    [Theory]
    [InlineData(8, 4, 8, 2)]
    [InlineData(8, 3, 8, 1)]
    [InlineData(8, 1, 4, 1)]
    [InlineData(3, 1, 1, 1)]
    public void Halving_takes_the_gpu_batches_first_then_the_batch_size(int size, int batches, int halvedSize, int halvedBatches)
    {
        var halved = new BlockPolicy(size, batches, "p").Halved();
        Assert.Equal((halvedSize, halvedBatches), (halved!.GpuBatchSize, halved.NumGpuBatches));
    }

    [Fact]
    public void A_block_of_one_sequence_has_no_half() => Assert.Null(new BlockPolicy(1, 1, "p").Halved());
}
