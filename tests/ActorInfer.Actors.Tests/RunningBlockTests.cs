using ActorInfer.Actors.Engine;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using ActorInfer.Model.Generation;
using Akka.Actor;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;

namespace ActorInfer.Actors.Tests;

public sealed class RunningBlockTests : IDisposable
{
    private readonly CompletionFactory _factory = new(TestModels.Tiny, null);
    private readonly ResidentEngine _engine;

    public RunningBlockTests() => _engine = new ResidentEngine(TestModels.LoadTiny(), _factory.Decode);

    public void Dispose() => _engine.Dispose();

    /// <summary>A block of two batches of two sequences each; the first sequence of the second batch has finished.</summary>
    private RunningBlock Block()
    {
        var items = Enumerable.Range(0, 4).Select(i => (new WorkItem($"k{i}", $"r{i}", TestModels.Request(i, maxTokens: 1), i), (IActorRef)ActorRefs.Nobody));
        var entries = RunningBlock.Entries(items, _factory);
        var block = new RunningBlock(1, new BlockPolicy(2, 2, "test"), entries, 2);
        block.Work[0] = _engine.Open([entries[0].State!, entries[1].State!]);
        block.Work[1] = _engine.Open([entries[2].State!, entries[3].State!]);
        entries[2].State!.Append(5, -1f, _factory.Decode);
        Assert.True(entries[2].State!.IsFinished);
        return block;
    }

    /// <summary>
    /// The tokens a block's sequences asked of it: what each has to generate, within the generation length its policy was
    /// planned for; a request that failed validation asks nothing.
    /// </summary>
    [Fact]
    public void A_block_counts_the_tokens_its_sequences_asked_within_its_planned_length()
    {
        var asks = new[] { 3, 40, 8 };
        var items = asks.Select((n, i) => (new WorkItem($"k{i}", $"r{i}", TestModels.Request(i, maxTokens: n), i), (IActorRef)ActorRefs.Nobody))
            .Append((new WorkItem("bad", "bad", TestModels.Request(9, maxTokens: 0) with { Prompt = Prompt.FromIds([]) }, 9), ActorRefs.Nobody));
        var entries = RunningBlock.Entries(items, _factory);
        Assert.NotNull(entries[^1].Error);
        using var block = new RunningBlock(1, new BlockPolicy(4, 1, "test"), entries, 1);
        Assert.Equal(3 + 16 + 8, block.Asked(16));
        Assert.Equal(3 + 40 + 8, block.Asked(64));
    }

    /// <summary>
    /// A drop frees the batch at once and leaves the block's entries alone; taking the dropped out afterwards gives the
    /// batch's unfinished sequences (once), and its finished one stays in the block with its result.
    /// </summary>
    [Fact]
    public void A_dropped_batch_is_freed_at_once_and_its_unfinished_sequences_taken_out_after()
    {
        using var block = Block();
        var batch = block.Work[1]!;
        Assert.True(block.Drop(1));
        Assert.True(batch.Disposed);
        Assert.Null(block.Work[1]);
        Assert.False(block.Drop(1));
        Assert.Equal(4, block.Sequences.Count);
        var requeued = block.TakeDropped();
        Assert.Equal(["r3"], requeued.Select(e => e.Item.Id));
        Assert.Equal(["r0", "r1", "r2"], block.Sequences.Select(e => e.Item.Id));
        Assert.Empty(block.TakeDropped());
    }

    /// <summary>A block cannot answer its sequences while dropped ones are still among them (they are requeued, never answered).</summary>
    [Fact]
    public void Results_are_refused_while_dropped_sequences_are_still_in_the_block()
    {
        using var block = Block();
        block.Drop(0);
        var ex = Assert.Throws<InvalidOperationException>(() => block.Results(_factory, null));
        Assert.Contains("2 dropped sequences", ex.Message);
        _ = block.TakeDropped();
        Assert.Equal(["r2", "r3"], block.Results(_factory, null).Select(r => r.Item.Key).Select(k => "r" + k[1..]));
    }
    [Theory]
    // A block at 12 GiB (185 token/s) in its prefill, a policy five times faster: it starts again under it.
    [InlineData(185.0, 1048.0, 0, true)]
    // A quarter faster is not worth the recomputed caches.
    [InlineData(1048.0, 1350.0, 0, false)]
    // Twice as fast with most of the block still to run: starts again; with two steps of 32 left: finishes as it is.
    [InlineData(185.0, 400.0, 4, true)]
    [InlineData(185.0, 1048.0, 30, false)]
    // A slower policy never restarts a block (a fall drops only what no longer fits).
    [InlineData(1350.0, 185.0, 0, false)]
    public void A_block_starts_again_under_a_much_faster_policy_while_most_of_it_is_left(double running, double next, int step, bool restarts)
    {
        var bucket = new WorkloadBucket(512, 32);
        var block = new RunningBlock(1, new BlockPolicy(8, 40, "old") { PredictedTokensPerSecond = running, Bucket = bucket }, [], 40)
        {
            Step = new TokenStep(step),
        };
        var policy = new BlockPolicy(32, 1, "new") { PredictedTokensPerSecond = next, Bucket = bucket };
        Assert.Equal(restarts, BlockFitting.Restarts(block, policy));
        Assert.False(BlockFitting.Restarts(block, null));
    }

    [Fact]
    public void A_policy_planned_for_another_bucket_never_starts_a_block_again()
    {
        // A block of prompt-512 requests, and the policy the planner made for the queue's next requests of prompt 128: many
        // times faster a second (shorter prompts), but none of the block's sequences would run under it.
        var block = new RunningBlock(1, new BlockPolicy(128, 1, "512") { PredictedTokensPerSecond = 1701.5, Bucket = new WorkloadBucket(512, 32) }, [], 1);
        var shorter = new BlockPolicy(512, 1, "128") { PredictedTokensPerSecond = 5000, Bucket = new WorkloadBucket(128, 32) };
        Assert.False(BlockFitting.Restarts(block, shorter));
        // The same pace for the block's own bucket does start it again.
        Assert.True(BlockFitting.Restarts(block, shorter with { Bucket = new WorkloadBucket(512, 32) }));
    }

    [Fact]
    public void A_policy_that_only_moves_weights_never_starts_a_block_again()
    {
        var bucket = new WorkloadBucket(512, 32);
        var cpu = ActorInfer.Planning.TierFractions.AllCpu;
        ActorInfer.Planning.Policy Placed(double gpuWeights) =>
            new(3, 16, new ActorInfer.Planning.TierFractions(gpuWeights, 1 - gpuWeights, 0), cpu, cpu) { CpuAttention = true };
        var block = new RunningBlock(1, new BlockPolicy(3, 16, "firm") { PredictedTokensPerSecond = 20, Bucket = bucket, Runtime = Placed(0.1) }, [], 48);
        // Five times faster with its weights all on the device: the block takes them as it runs.
        var raised = new BlockPolicy(3, 16, "raised") { PredictedTokensPerSecond = 100, Bucket = bucket, Runtime = Placed(1) };
        Assert.False(BlockFitting.Restarts(block, raised));
        // As fast with the cache on the device as well: that placement is the new block's, so it starts again.
        var cacheOnDevice = raised with { Runtime = new ActorInfer.Planning.Policy(3, 16, ActorInfer.Planning.TierFractions.AllGpu,
            ActorInfer.Planning.TierFractions.AllGpu, cpu) { CpuAttention = true } };
        Assert.True(BlockFitting.Restarts(block, cacheOnDevice));
        // Planned under conservative sizing, not even that.
        Assert.False(BlockFitting.Restarts(block, cacheOnDevice with { KeepsRunningBlocks = true }));
    }
}
