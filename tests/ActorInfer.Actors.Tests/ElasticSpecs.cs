using System.Text.Json;
using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Layers;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using ActorInfer.TestSupport;
using Akka.Actor;
using Akka.TestKit.Xunit2;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;
using static TorchSharp.torch;
using LayerIndex = ActorInfer.Runtime.Schedule.LayerIndex;

namespace ActorInfer.Actors.Tests;

/// <summary>
/// A smaller policy arriving mid-block makes the scheduler drop GPU batches (on arrival, or at the next layer boundary), free their
/// caches and requeue their sequences with their progress; every request still finishes once, with the tokens it
/// would have had without the drop.
/// </summary>
public sealed partial class ElasticSpecs : TestKit, IDisposable
{
    private static readonly OptConfig Config = ReferenceModels.PreLn("elastic");
    private readonly string _modelDir = Path.Combine(TestModels.TempDir(), "model");
    private readonly CompletionFactory _factory = new(Config, null);

    public ElasticSpecs() : base(TestModels.ActorConfig)
    {
        ReferenceModels.Write(_modelDir, Config, seed: 5);
    }

    private static CompletionRequest Request(int i) => new()
    {
        Prompt = Prompt.FromIds(Enumerable.Range(0, 3 + i % 6).Select(j => 2 + (i * 13 + j * 7) % 290).ToArray()),
        MaxTokens = 6 + i % 4,
        Temperature = i % 4 == 0 ? 0.9 : 0.0,
        Seed = 500 + i,
        IgnoreEos = true,
    };

    private static WorkItem Item(int i) => new($"k{i}", $"r{i}", Request(i), Seed: i);

    /// <summary>Each request generated alone, all on the device: what a run with drops must reproduce.</summary>
    private Dictionary<string, string> Reference(int count) => Reference(Enumerable.Range(0, count).Select(Item));

    private Dictionary<string, string> Reference(IEnumerable<WorkItem> items)
    {
        using var source = SafetensorsCheckpoint.Open(_modelDir);
        using var model = ResidentModel.Load(source, Config, ScalarType.Float32, CPU);
        var result = new Dictionary<string, string>();
        foreach (var item in items)
        {
            var state = _factory.Create(item.Request, item.Seed);
            BatchGenerator.Run(model, [state], _factory.Decode);
            result[item.Key] = string.Join(",", state.OutputIds);
        }
        return result;
    }

    /// <summary>Reads the test actor's mail until <paramref name="count"/> results have come, each key once; <paramref name="each"/> sees every message.</summary>
    private Dictionary<string, string> Results(int count, Action<object>? each = null)
    {
        var results = new Dictionary<string, string>();
        while (results.Count < count)
        {
            var message = ExpectMsg<object>(TimeSpan.FromSeconds(30));
            each?.Invoke(message);
            if (message is Finished finished)
                foreach (var r in finished.Results)
                    Assert.True(results.TryAdd(r.Key, OutputIds(r.ResultLine)), $"{r.Key} answered twice");
        }
        return results;
    }

    private static string OutputIds(string line) =>
        string.Join(",", JsonDocument.Parse(line).RootElement.GetProperty("output_ids").EnumerateArray().Select(x => x.GetInt32()));

    private IInferenceEngine ResidentEngine()
    {
        using var source = SafetensorsCheckpoint.Open(_modelDir);
        return new ResidentEngine(ResidentModel.Load(source, Config, ScalarType.Float32, CPU), _factory.Decode);
    }

    /// <param name="cacheOnDevice">
    /// The cache on the (CPU-backed) device tier, attended in place: decoding layers of one-batch steps then stop for a
    /// change on its way. Otherwise on the CPU tier with CPU attention.
    /// </param>
    private (IInferenceEngine Engine, IDisposable Owner) OffloadedEngine(bool cacheOnDevice = false, bool batchInvariant = false)
    {
        using var source = SafetensorsCheckpoint.Open(_modelDir);
        var policy = cacheOnDevice
            ? new Policy(1, 1, new TierFractions(0.5, 0.5, 0), TierFractions.AllGpu, TierFractions.AllGpu)
            : new Policy(1, 1, new TierFractions(0.5, 0.5, 0), TierFractions.AllCpu, new TierFractions(0.5, 0.5, 0)) { CpuAttention = true };
        var copies = new CpuCopyEngine();
        var runtime = new OffloadRuntime(Config, source, policy, TierSet.Create(1L << 30, 1L << 30, null, 0), copies, ScalarType.Float32,
            batchInvariant: batchInvariant);
        return (new OffloadedEngine(runtime, _factory.Decode), new Owner(runtime, copies));
    }

    private sealed class Owner(params IDisposable[] owned) : IDisposable
    {
        public void Dispose()
        {
            foreach (var o in owned) o.Dispose();
        }
    }

    /// <summary>
    /// A scheduler running <paramref name="items"/> under <paramref name="policy"/>, observed by the test actor, whose
    /// layer 0 is a probe: the test holds each computation sent there until it passes it on (see <see cref="ForwardAll"/>).
    /// </summary>
    private (IActorRef[] Layers, Akka.TestKit.TestProbe Gate, IActorRef Scheduler) StartWithLayerZeroHeld(IInferenceEngine engine, BlockPolicy policy,
        WorkItem[] items, Memory.TierBudgets? budgets = null)
    {
        var layers = Layers(engine);
        var gate = CreateTestProbe();
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(engine, _factory, [gate.Ref, .. layers[1..]], planner: null));
        scheduler.Tell(new PlannerProtocol.PolicyChanged(policy, budgets ?? Memory.TierBudgets.None));
        scheduler.Tell(new Observe(TestActor));
        scheduler.Tell(new Enqueue(items));
        return (layers, gate, scheduler);
    }

    /// <summary>From now on the probe passes every computation on to the real layer at once.</summary>
    private static void ForwardAll(Akka.TestKit.TestProbe gate, IActorRef layer) =>
        gate.SetAutoPilot(new Akka.TestKit.DelegateAutoPilot((sender, message) =>
        {
            layer.Tell(message, sender);
            return Akka.TestKit.AutoPilot.KeepRunning;
        }));

    private IActorRef[] Layers(IInferenceEngine engine) =>
        Enumerable.Range(0, Config.NumHiddenLayers).Select(i => Sys.ActorOf(LayerProtocol.Props(new LayerIndex(i), engine))).ToArray();

    [Fact]
    public void A_smaller_policy_mid_block_drops_the_last_batches_and_their_requests_finish_unchanged()
    {
        var engine = ResidentEngine();
        var (layers, gate, scheduler) = StartWithLayerZeroHeld(engine, new BlockPolicy(2, 3, "large"), Enumerable.Range(0, 6).Select(Item).ToArray());
        ExpectMsg<BlockStarted>(m => m.Block == 1 && m.Sequences == 6 && m.GpuBatches == 3);

        // Hold the block in its prefill while the smaller policy arrives.
        var held = gate.ExpectMsg<LayerProtocol.Compute>();
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(2, 1, "small"), Memory.TierBudgets.None));
        ForwardAll(gate, layers[0]);
        layers[0].Tell(held, scheduler);

        // Honoured as soon as the batches are gone (before the drop's bookkeeping); then the enqueuer hears where each
        // requeued sequence stopped: within the prefill, before its first token.
        var honoured = ExpectMsg<PolicyHonoured>();
        Assert.True(honoured.Dropped && honoured.Elapsed > TimeSpan.Zero, $"{honoured}");
        Assert.StartsWith("fit and drop 2", honoured.ApplyingParts);
        var checkpointed = ExpectMsg<Checkpointed>();
        Assert.Equal(1, checkpointed.Block);
        Assert.Equal(["k2", "k3", "k4", "k5"], checkpointed.Items.Select(c => c.Key).Order());
        Assert.All(checkpointed.Items, c => Assert.Empty(c.Checkpoint.OutputIds));
        var dropped = ExpectMsg<BatchesDropped>();
        Assert.Equal((1, 2, 4), (dropped.Block, dropped.Batches, dropped.Sequences));
        // The drop comes on arrival, before the first layer's computation of the prefill: the dropped sequences had
        // chosen no token yet.
        Assert.Equal(Enumerable.Range(2, 4).Sum(i => Request(i).Prompt.TokenIds!.Count), dropped.TokensToRecompute);
        Assert.Equal(Reference(6), Results(6));
        engine.Dispose();
    }

    [Fact]
    public void A_much_faster_policy_in_the_prefill_starts_the_block_again_and_its_requests_finish_unchanged()
    {
        var engine = ResidentEngine();
        var (layers, gate, scheduler) = StartWithLayerZeroHeld(engine, new BlockPolicy(2, 3, "slow") { PredictedTokensPerSecond = 100 },
            Enumerable.Range(0, 6).Select(Item).ToArray());
        ExpectMsg<BlockStarted>(m => m.Block == 1 && m.Sequences == 6 && m.GpuBatches == 3);

        // The same geometry, predicted ten times faster, arrives while the block is held in its prefill: every batch
        // is dropped (a running block keeps its placement), and a new block takes the requests under the new policy.
        var held = gate.ExpectMsg<LayerProtocol.Compute>();
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(2, 3, "fast") { PredictedTokensPerSecond = 1000 }, Memory.TierBudgets.None));
        ForwardAll(gate, layers[0]);
        layers[0].Tell(held, scheduler);

        var honoured = ExpectMsg<PolicyHonoured>();
        Assert.StartsWith("start again: drop 3", honoured.ApplyingParts);
        ExpectMsg<Checkpointed>(m => m.Block == 1 && m.Items.Count == 6);
        var dropped = ExpectMsg<BatchesDropped>();
        Assert.Equal((1, 3, 6), (dropped.Block, dropped.Batches, dropped.Sequences));
        var restarted = false;
        Assert.Equal(Reference(6), Results(6, m => restarted |= m is BlockStarted { Block: 2, Sequences: 6, GpuBatches: 3 }));
        Assert.True(restarted, "the requests were not taken by a new block of the new policy");
        engine.Dispose();
    }

    /// <summary>
    /// A policy that only puts more weights on the device, arriving mid-block, neither drops nor restarts the block, and the
    /// block keeps its placement (no weights copied in for it while it runs); the weights are on the device once the block has
    /// finished. With the budgets known, they went there as the block's layers copied them in anyway (nothing was left to
    /// move at the block's end); without, they move in then.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_rise_that_only_moves_weights_in_waits_for_the_block_s_end_and_drops_nothing(bool budgetsKnown)
    {
        var (engine, owner) = OffloadedEngine();
        Policy Placed(double gpuWeights) =>
            new(1, 1, new TierFractions(gpuWeights, 1 - gpuWeights, 0), TierFractions.AllCpu, new TierFractions(0.5, 0.5, 0)) { CpuAttention = true };
        var (layers, gate, scheduler) = StartWithLayerZeroHeld(engine,
            new BlockPolicy(1, 1, "half") { Runtime = Placed(0.5), PredictedTokensPerSecond = 100 }, [Item(0), Item(1)]);
        ExpectMsg<BlockStarted>(m => m.Block == 1);
        var held = gate.ExpectMsg<LayerProtocol.Compute>();

        // Ten times faster with every weight on the device: honoured as it is (the budgets are no lower), no batch dropped.
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 1, "all") { Runtime = Placed(1), PredictedTokensPerSecond = 1000 },
            budgetsKnown ? new Memory.TierBudgets(1L << 30, 1L << 30, 0) : Memory.TierBudgets.None));
        var honoured = ExpectMsg<PolicyHonoured>();
        Assert.False(honoured.Dropped, $"{honoured}");
        Assert.Equal(0.5, engine.Placement!.Weights.Gpu, 9);
        ForwardAll(gate, layers[0]);
        layers[0].Tell(held, scheduler);
        var started = new List<int>();
        Assert.Equal(Reference(2), Results(2, m =>
        {
            if (m is BlockStarted b) started.Add(b.Block);
            Assert.IsNotType<BatchesDropped>(m);
        }));
        // The second request's block ran after the first ended, with the weights moved in between them.
        Assert.Equal([2], started);
        Assert.Equal(1.0, engine.Placement!.Weights.Gpu, 9);
        var offloaded = (OffloadedEngine)engine;
        Assert.Equal(0, offloaded.WeightBytesGrown);
        if (budgetsKnown) Assert.Equal(0, offloaded.WeightBytesMoved);
        else Assert.True(offloaded.WeightBytesMoved > 0);
        Sys.Stop(scheduler);
        engine.Dispose();
        owner.Dispose();
    }

    /// <summary>
    /// A smaller geometry planned under conservative sizing sheds only what no longer fits in memory: with room for the
    /// whole block, nothing is dropped (drop-only sizing drops down to the new block size).
    /// </summary>
    [Theory]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void Under_conservative_sizing_a_smaller_geometry_alone_drops_nothing(bool conservative, bool drops)
    {
        var (engine, owner) = OffloadedEngine();
        Policy Placed(int batches) =>
            new(1, batches, new TierFractions(0.5, 0.5, 0), TierFractions.AllCpu, new TierFractions(0.5, 0.5, 0)) { CpuAttention = true };
        var (layers, gate, scheduler) = StartWithLayerZeroHeld(engine, new BlockPolicy(1, 2, "two") { Runtime = Placed(2) }, [Item(0), Item(1)]);
        ExpectMsg<BlockStarted>(m => m.Block == 1 && m.GpuBatches == 2);
        var held = gate.ExpectMsg<LayerProtocol.Compute>();
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 1, "one") { Runtime = Placed(1), KeepsRunningBlocks = conservative },
            Memory.TierBudgets.None));
        ForwardAll(gate, layers[0]);
        layers[0].Tell(held, scheduler);
        var dropped = false;
        Assert.Equal(Reference(2), Results(2, m => dropped |= m is BatchesDropped));
        Assert.Equal(drops, dropped);
        Sys.Stop(scheduler);
        engine.Dispose();
        owner.Dispose();
    }

    /// <summary>
    /// A fall arrives while the block's one GPU batch waits for its next layer (the computation sent, not begun): it
    /// applies on arrival, without waiting for that layer. The batch is dropped with the computation addressed to it,
    /// which its layer then skips (no answer, nothing computed on freed memory); the requests resume unchanged once
    /// memory returns.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_fall_applies_on_arrival_and_the_computation_of_a_dropped_batch_is_skipped(bool offloaded)
    {
        var (engine, owner) = offloaded ? OffloadedEngine() : (ResidentEngine(), new Owner());
        var (layers, gate, scheduler) = StartWithLayerZeroHeld(engine, new BlockPolicy(1, 1, "one"), [Item(0)]);
        ExpectMsg<BlockStarted>(m => m.Block == 1 && m.GpuBatches == 1);
        var held = gate.ExpectMsg<LayerProtocol.Compute>();

        // No room for one sequence: the block's batch goes now, while its first layer waits.
        scheduler.Tell(new PlannerProtocol.PolicyChanged(null, Memory.TierBudgets.None));
        var honoured = ExpectMsg<PolicyHonoured>();
        Assert.True(honoured.Dropped, $"{honoured}");
        Assert.StartsWith("fit and drop 1", honoured.ApplyingParts);
        Assert.Equal("prefill", honoured.ArrivedIn);
        Assert.Equal(["k0"], ExpectMsg<Checkpointed>().Items.Select(c => c.Key));
        var dropped = ExpectMsg<BatchesDropped>();
        Assert.Equal((1, 1, 1), (dropped.Block, dropped.Batches, dropped.Sequences));
        ExpectMsg<BlockFinished>(m => m.Block == 1 && m.Sequences == 0);

        // The computation that waited reaches its layer: skipped, unanswered.
        var replies = CreateTestProbe();
        layers[0].Tell(held, replies.Ref);
        replies.ExpectNoMsg(TimeSpan.FromMilliseconds(300));

        ForwardAll(gate, layers[0]);
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 1, "back"), Memory.TierBudgets.None));
        Assert.Equal(Reference(1), Results(1));
        Sys.Stop(scheduler);
        engine.Dispose();
        owner.Dispose();
    }

    /// <summary>
    /// The computation of a batch dropped on arrival had run already: its result, still on its way, reaches the
    /// scheduler only once a new block (of another request) is running at the same (layer, batch, step). It is told
    /// apart by its batch and discarded; the new block's own result is the one used, and every request finishes unchanged.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_late_result_of_a_dropped_batch_is_not_taken_for_the_next_blocks(bool offloaded)
    {
        var (engine, owner) = offloaded ? OffloadedEngine() : (ResidentEngine(), new Owner());
        var (layers, gate, scheduler) = StartWithLayerZeroHeld(engine, new BlockPolicy(1, 1, "one"), [Item(0)]);
        ExpectMsg<BlockStarted>(m => m.Block == 1);
        // Block 1's first computation runs; its result is held back.
        var late = CreateTestProbe();
        layers[0].Tell(gate.ExpectMsg<LayerProtocol.Compute>(), late.Ref);
        var stale = late.ExpectMsg<LayerProtocol.Computed>();

        scheduler.Tell(new PlannerProtocol.PolicyChanged(null, Memory.TierBudgets.None));
        Assert.True(ExpectMsg<PolicyHonoured>().Dropped);
        FishForMessage<BlockFinished>(m => m.Block == 1);
        // Block 2 runs another request first (a higher priority): the late result is not its own.
        scheduler.Tell(new Enqueue([Item(1) with { Priority = 1 }]));
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 1, "back"), Memory.TierBudgets.None));
        FishForMessage<BlockStarted>(m => m.Block == 2);
        var fresh = gate.ExpectMsg<LayerProtocol.Compute>();
        Assert.Equal((stale.Batch, stale.Step), (fresh.Batch, fresh.Step));

        // The late result arrives first, then block 2's computation goes on.
        scheduler.Tell(stale);
        ForwardAll(gate, layers[0]);
        layers[0].Tell(fresh, scheduler);
        Assert.Equal(Reference(2), Results(2));
        Sys.Stop(scheduler);
        engine.Dispose();
        owner.Dispose();
    }

    public new void Dispose() => base.Dispose();
}
