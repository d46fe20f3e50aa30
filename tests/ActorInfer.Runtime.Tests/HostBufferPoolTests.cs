using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

/// <summary>
/// The CPU tier's buffers prepared ahead by its worker. On this machine (no CUDA) they are plain host memory, not
/// page-locked: the same code path, without the registration.
/// </summary>
public sealed class HostBufferPoolTests
{
    private const long MiB = 1L << 20;
    private static readonly long[] Large = [2, 1024, 1024]; // 8 MiB of float32
    private static readonly long[] Other = [1, 1024, 1024]; // 4 MiB of float32

    /// <summary>Waits for the worker to finish what it was given (no time limit is asserted; a hang fails after a minute).</summary>
    private static void Settle(MemoryTier tier)
    {
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (!tier.PreparationIdle)
        {
            if (waited.Elapsed > TimeSpan.FromMinutes(1)) throw new TimeoutException("the CPU tier's worker did not settle");
            Thread.Sleep(5);
        }
    }

    private static HostBufferNeed Need(long[] shape, int count) => new(shape, ScalarType.Float32, count);

    [Fact]
    public void PreparedBuffersServeTheAllocationsOfTheirShapesAndCountAgainstTheBudget()
    {
        using var tier = MemoryTier.ForCpu(64 * MiB);
        var asked = tier.Prepare([Need(Large, 3), Need(Other, 2)]);
        Assert.Equal(new HostBufferPreparation(32 * MiB, 32 * MiB), asked);
        Settle(tier);
        Assert.Equal(32 * MiB, tier.KeptBytes);
        Assert.Equal(0, tier.BytesHeld);
        Assert.Equal(32 * MiB, tier.BytesTaken);
        Assert.Equal(32 * MiB, tier.HostBuffers.PreparedBytes);

        var leases = new List<TensorLease>();
        for (var i = 0; i < 3; i++) leases.Add(tier.Allocate(Large, ScalarType.Float32, $"large {i}", zeroed: false));
        for (var i = 0; i < 2; i++) leases.Add(tier.Allocate(Other, ScalarType.Float32, $"other {i}", zeroed: false));
        var counts = tier.HostBuffers;
        Assert.Equal(32 * MiB, counts.ServedPreparedBytes);
        Assert.Equal(0, counts.InlineBytes);
        Assert.Equal(0, tier.KeptBytes);
        Assert.Equal(32 * MiB, tier.BytesHeld);
        // A prepared buffer is zeroed (its first touch).
        Assert.Equal(0f, leases[0].Tensor.abs().max().item<float>());

        // One more than was prepared: made inline.
        using (tier.Allocate(Large, ScalarType.Float32, "one more")) Assert.Equal(8 * MiB, tier.HostBuffers.InlineBytes);
        foreach (var lease in leases) lease.Dispose();
        Assert.Equal(0, tier.BytesHeld);
        Assert.True(tier.BytesTaken <= tier.BudgetBytes);
    }

    [Fact]
    public void TheSameNeedsAgainChangeNothingAndWhatLeasesHoldCountsAsThere()
    {
        using var tier = MemoryTier.ForCpu(64 * MiB);
        using var held = tier.Allocate(Large, ScalarType.Float32, "a running block's");
        // Two wanted, one held by a lease that comes back when its block ends: one to make.
        Assert.Equal(8 * MiB, tier.Prepare([Need(Large, 2)])!.QueuedBytes);
        Assert.Null(tier.Prepare([Need(Large, 2)]));
        Settle(tier);
        Assert.Equal(8 * MiB, tier.KeptBytes);
    }

    [Fact]
    public void ThePoolPreparesNoMoreThanTheBudgetAllowsBesideWhatIsHeld()
    {
        using var tier = MemoryTier.ForCpu(40 * MiB);
        using var held = tier.Allocate(Other, ScalarType.Float32, "held");
        tier.Prepare([Need(Large, 10)]);
        Settle(tier);
        // 4 MiB held: four of the ten fit (4 + 4 x 8 = 36 MiB; a fifth would take it to 44).
        Assert.Equal(32 * MiB, tier.KeptBytes);
        Assert.True(tier.BytesTaken <= tier.BudgetBytes);
    }

    [Fact]
    public void ALowerBudgetFreesPreparedBuffersThatNoLongerFit()
    {
        using var tier = MemoryTier.ForCpu(64 * MiB);
        tier.Prepare([Need(Large, 4)]);
        Settle(tier);
        Assert.Equal(32 * MiB, tier.KeptBytes);
        tier.SetBudget(20 * MiB);
        Assert.Equal(16 * MiB, tier.KeptBytes);
        Assert.True(tier.BytesTaken <= 20 * MiB);
    }

    [Fact]
    public void NewNeedsKeepWhatNoNeedWantsWhileTheBudgetHasRoomAndALaterPolicyTakesItBack()
    {
        using var tier = MemoryTier.ForCpu(64 * MiB);
        tier.Prepare([Need(Large, 2)]);
        Settle(tier);
        var old = tier.Allocate(Large, ScalarType.Float32, "the running block's");
        tier.Prepare([Need(Other, 3)]);
        Settle(tier);
        // Three 4 MiB buffers are ready beside the 8 MiB one kept as a spare: nothing was freed.
        Assert.Equal(20 * MiB, tier.KeptBytes);
        old.Dispose();
        Settle(tier);
        // The running block's buffer, of the earlier needs, is kept too when its lease ends.
        Assert.Equal(0, tier.HostBuffers.ReleasedBytes);
        Assert.Equal(28 * MiB, tier.KeptBytes);
        Assert.Equal(0, tier.BytesHeld);
        Assert.Equal(28 * MiB, tier.BytesTaken);

        // The earlier policy again: both its buffers are there, none is made anew, none freed.
        var before = tier.HostBuffers;
        Assert.Equal(0, tier.Prepare([Need(Large, 2)])!.QueuedBytes);
        using var a = tier.Allocate(Large, ScalarType.Float32, "again 1");
        using var b = tier.Allocate(Large, ScalarType.Float32, "again 2");
        var again = tier.HostBuffers - before;
        Assert.Equal(16 * MiB, again.ReusedBytes + again.ServedPreparedBytes);
        Assert.Equal(0, again.InlineBytes);
        Assert.Equal(0, tier.HostBuffers.ReleasedBytes);
    }

    [Fact]
    public void TheWorkerFreesSparesLargestFirstWhereAWantedBufferNeedsTheirRoom()
    {
        using var tier = MemoryTier.ForCpu(40 * MiB);
        tier.Prepare([Need(Large, 1), Need(Other, 1)]);
        Settle(tier);
        Assert.Equal(12 * MiB, tier.KeptBytes);
        // New needs: four 8 MiB buffers of another shape, 32 MiB beside the 12 kept as spares in a budget of 40.
        long[] wide = [1, 2048, 1024];
        tier.Prepare([Need(wide, 4)]);
        Settle(tier);
        // The fourth needed room: the larger spare (8 MiB) was freed by the worker, the smaller one is still kept.
        Assert.Equal(8 * MiB, tier.HostBuffers.ReleasedBytes);
        Assert.Equal(36 * MiB, tier.KeptBytes);
        Assert.True(tier.BytesTaken <= tier.BudgetBytes);
        var leases = Enumerable.Range(0, 4).Select(i => tier.Allocate(wide, ScalarType.Float32, $"wide {i}")).ToList();
        using (tier.Allocate(Other, ScalarType.Float32, "the spare"))
        {
            Assert.Equal(0, tier.HostBuffers.InlineBytes);
            Assert.Equal(4 * MiB, tier.HostBuffers.ReusedBytes + tier.HostBuffers.ServedPreparedBytes - 32 * MiB);
        }
        foreach (var lease in leases) lease.Dispose();
    }

    [Fact]
    public void AnAllocationTakesASparesRoomBeforeAWantedBuffers()
    {
        using var tier = MemoryTier.ForCpu(24 * MiB);
        tier.Prepare([Need(Large, 1), Need(Other, 1)]);
        Settle(tier);
        tier.Prepare([Need(Large, 1)]);
        Settle(tier);
        // 12 MiB kept: the wanted 8 MiB buffer and a 4 MiB spare. A 16 MiB buffer needs 4 MiB more than is free: the
        // spare gives it, though the wanted buffer is the larger.
        Assert.Equal(12 * MiB, tier.KeptBytes);
        long[] odd = [4, 1024, 1024];
        using var lease = tier.Allocate(odd, ScalarType.Float32, "odd");
        Assert.Equal(8 * MiB, tier.KeptBytes);
        using var large = tier.Allocate(Large, ScalarType.Float32, "the wanted one");
        Assert.Equal(8 * MiB, tier.HostBuffers.ServedPreparedBytes);
    }

    [Fact]
    public void DisposingTheTierStopsTheWorkerAndFreesWhatItPrepared()
    {
        var tier = MemoryTier.ForCpu(256 * MiB);
        tier.Prepare([Need(Large, 20)]);
        tier.Dispose();
        Assert.True(tier.PreparationIdle);
        Assert.Equal(0, tier.KeptBytes);
        Assert.Equal(0, tier.BytesTaken);
        Assert.Null(tier.Prepare([Need(Other, 1)]));
        Assert.Equal(0, tier.BytesTaken);

        var set = TierSet.Create(64 * MiB, 64 * MiB, null, 0);
        set.Cpu.Prepare([Need(Large, 2)]);
        Settle(set.Cpu);
        set.Dispose();
        Assert.Equal(0, set.Cpu.BytesTaken);
    }

    [Fact]
    public void AllocationsRacingTheWorkerNeverMakeABufferTwice()
    {
        const int count = 64;
        // Exactly the budget: a buffer made twice would not fit.
        using var tier = MemoryTier.ForCpu(count * 4 * MiB);
        tier.Prepare([Need(Other, count)]);
        var leases = new List<TensorLease>();
        for (var i = 0; i < count; i++) leases.Add(tier.Allocate(Other, ScalarType.Float32, $"cache {i}", zeroed: false));
        Settle(tier);
        var counts = tier.HostBuffers;
        // Each buffer was made once, by the worker or by this thread, and each allocation was served once.
        Assert.Equal(count * 4 * MiB, counts.PreparedBytes + counts.InlineBytes);
        Assert.Equal(counts.PreparedBytes, counts.ServedPreparedBytes);
        Assert.Equal(count * 4 * MiB, tier.BytesHeld);
        Assert.Equal(0, tier.KeptBytes);
        foreach (var lease in leases) lease.Dispose();
        Assert.Equal(count * 4 * MiB, tier.KeptBytes);
        Assert.Equal(count * 4 * MiB, tier.BytesTaken);
    }

    [Fact]
    public void SmallBuffersAndOtherTiersAreNotPrepared()
    {
        using var tier = MemoryTier.ForCpu(64 * MiB);
        Assert.Equal(new HostBufferPreparation(0, 0), tier.Prepare([Need([1, 1024], 4)]));
        using var device = MemoryTier.ForDevice(64 * MiB);
        Assert.Null(device.Prepare([Need(Large, 1)]));
        Assert.Equal(0, device.BytesHeld);
    }

    /// <summary>An OPT whose cache homes and prefill hidden states reach the size the CPU tier keeps (4 MiB).</summary>
    private static readonly OptConfig Wide = TestConfigs.PreLn with
    {
        Name = "test-wide", HiddenSize = 512, NumAttentionHeads = 8, FfnDim = 512, WordEmbedProjDim = 512, NumHiddenLayers = 2,
        MaxPositionEmbeddings = 600,
    };

    [Fact]
    public void TheRuntimeNamesTheBuffersItsBlockTakesAndTheBlockFindsThemPrepared()
    {
        using var source = new RandomWeights(Wide, seed: 1);
        using var tiers = TierSet.Create(Harness.Generous, Harness.Generous, null, 0);
        using var copies = new CpuCopyEngine();
        // Cache and activations on the CPU tier (the device tier is host memory too on this machine).
        var policy = new Policy(8, 2, TierFractions.AllGpu, TierFractions.AllCpu, TierFractions.AllCpu);
        using var runtime = new OffloadRuntime(Wide, source, policy, tiers, copies, ScalarType.Float32);
        var prompt = Enumerable.Range(0, 256).Select(j => 4 + j % 200).ToArray();
        var block = Enumerable.Range(0, 16).Select(i => new SequenceState(
            new CompletionRequest { Prompt = Prompt.FromIds(prompt), MaxTokens = 8, Temperature = 0, IgnoreEos = true },
            prompt, seed: i, Wide.EosTokenId)).ToList();

        var needs = runtime.HostBuffersFor(block);
        // Per GPU batch: keys and values of each of the 2 decoder layers, [8, 8, 264, 64] float32 (4.1 MiB each); the
        // prefill's hidden state [8, 256, 512] (4 MiB), one per batch and the one being computed.
        long cacheBytes = 8L * 8 * 264 * 64 * 4, hiddenBytes = 8L * 256 * 512 * 4;
        Assert.Equal(2 * 2 * 2 * cacheBytes + 3 * hiddenBytes, needs.Sum(n => n.Bytes * n.Count));
        tiers.Cpu.Prepare(needs);
        Settle(tiers.Cpu);

        var before = tiers.Cpu.HostBuffers;
        using (var session = runtime.OpenBlock(block, Harness.Decode))
        {
            var d = tiers.Cpu.HostBuffers - before;
            Assert.Equal(2 * 2 * 2 * cacheBytes, d.ServedPreparedBytes);
            Assert.Equal(0, d.InlineBytes);
            session.RunStep(TokenStep.Prefill);
            d = tiers.Cpu.HostBuffers - before;
            // The prefill's hidden states came from the pool too (reused across layers once returned).
            Assert.Equal(0, d.InlineBytes);
            Assert.True(d.ServedPreparedBytes >= 2 * 2 * 2 * cacheBytes + 3 * hiddenBytes);
        }
    }
}
