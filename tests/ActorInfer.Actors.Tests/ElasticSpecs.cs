using System.Text.Json;
using ActorInfer.Actors.Configuration;
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

    /// <summary>
    /// A resident engine whose tokens stay in flight until <paramref name="gate"/> opens, under a scheduler running a
    /// block of 2 x 3 of <paramref name="items"/>, started and observed by the test actor.
    /// </summary>
    private (ResidentEngine Engine, IActorRef Scheduler) StartGated(TokenGate gate, WorkItem[] items)
    {
        using var source = SafetensorsCheckpoint.Open(_modelDir);
        var engine = new ResidentEngine(ResidentModel.Load(source, Config, ScalarType.Float32, CPU), _factory.Decode, gate.Fence);
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(engine, _factory, Layers(engine), planner: null));
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(2, 3, "large"), Memory.TierBudgets.None));
        scheduler.Tell(new Observe(TestActor));
        scheduler.Tell(new Enqueue(items));
        ExpectMsg<BlockStarted>(m => m.Block == 1 && m.GpuBatches == 3);
        // All three batches have chosen their first tokens; none has reached the host.
        Assert.True(gate.Launched.Wait(TimeSpan.FromSeconds(30)), "the prefill's tokens were never chosen");
        return (engine, scheduler);
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
    private (IInferenceEngine Engine, IDisposable Owner) OffloadedEngine(bool cacheOnDevice = false)
    {
        using var source = SafetensorsCheckpoint.Open(_modelDir);
        var policy = cacheOnDevice
            ? new Policy(1, 1, new TierFractions(0.5, 0.5, 0), TierFractions.AllGpu, TierFractions.AllGpu)
            : new Policy(1, 1, new TierFractions(0.5, 0.5, 0), TierFractions.AllCpu, new TierFractions(0.5, 0.5, 0)) { CpuAttention = true };
        var copies = new CpuCopyEngine();
        var runtime = new OffloadRuntime(Config, source, policy, TierSet.Create(1L << 30, 1L << 30, null, 0), copies, ScalarType.Float32);
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
        WorkItem[] items)
    {
        var layers = Layers(engine);
        var gate = CreateTestProbe();
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(engine, _factory, [gate.Ref, .. layers[1..]], planner: null));
        scheduler.Tell(new PlannerProtocol.PolicyChanged(policy, Memory.TierBudgets.None));
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

    /// <summary>
    /// The device runs out of memory behind the planner's back (its tier refuses past a budget the scheduler was never
    /// told of, as a device does when another tenant took memory): the block's sequences are requeued and the next
    /// blocks run at half the size until they fit; every request finishes once, unchanged.
    /// </summary>
    [Fact]
    public void A_device_out_of_memory_is_pressure_and_every_request_finishes_unchanged()
    {
        using var source = SafetensorsCheckpoint.Open(_modelDir);
        var all = TierFractions.AllGpu;
        var tiers = TierSet.Create(1L << 30, 1L << 30, null, 0);
        using var copies = new CpuCopyEngine();
        using var runtime = new OffloadRuntime(Config, source, new Policy(1, 1, all, all, all), tiers, copies, ScalarType.Float32);
        // Room for one GPU batch of 2 of the longest requests (8 prompt tokens, 9 new ones): a block of 2 x 3 cannot open.
        tiers.Device.SetBudget(runtime.PlanBlock(2, 1, 17, 17).Total.Device);
        var engine = new OffloadedEngine(runtime, _factory.Decode);
        // A node whose planner knows no budget: the policy stands until the device refuses it.
        using var driver = ActorInfer.Actors.Node.LocalNode.Start(new ActorInfer.Actors.Node.NodeParts(engine, _factory, tiers, Memory.Tier.Gpu,
            CpuTierActor: true, new FixedPolicyPlanner(new BlockPolicy(2, 3, "larger than the device"), Memory.TierBudgets.None, adapting: null),
            Buckets: null, new Memory.MemoryProtocol.Settings(null, null, null, TimeSpan.FromDays(1), 0), Probe: null, MaxWaitForMemory: null));
        var lines = driver.Run(Enumerable.Range(0, 8).Select(Item).ToArray(), TimeSpan.FromSeconds(60));
        var results = Enumerable.Range(0, 8).ToDictionary(i => $"k{i}", i => OutputIds(lines[i]));
        Assert.Equal(Reference(8), results);
        var oom = Assert.Single(driver.OutOfMemory);
        Assert.Equal(6, oom.Requeued);
        Assert.Contains("Device tier", oom.Error);
        engine.Dispose();
    }

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

    /// <summary>The time to honour a policy counts from the budget change behind it, not from its arrival.</summary>
    [Fact]
    public void The_time_to_honour_counts_from_the_budget_change()
    {
        var engine = ResidentEngine();
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(engine, _factory, Layers(engine), planner: null));
        scheduler.Tell(new Observe(TestActor));
        var changedAt = System.Diagnostics.Stopwatch.GetTimestamp() - System.Diagnostics.Stopwatch.Frequency / 2;
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 1, "one"), Memory.TierBudgets.None) { ChangedAt = changedAt });
        var honoured = ExpectMsg<PolicyHonoured>();
        Assert.InRange(honoured.Elapsed, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(30));
        // Its parts: nearly all of it was the way to the scheduler; the parts add up to the whole.
        Assert.InRange(honoured.Arrival, TimeSpan.FromMilliseconds(500), honoured.Elapsed);
        Assert.InRange((honoured.Arrival + honoured.ToBoundary + honoured.Applying - honoured.Elapsed).Duration(), TimeSpan.Zero, TimeSpan.FromMilliseconds(0.01));
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 2, "two"), Memory.TierBudgets.None));
        Assert.InRange(ExpectMsg<PolicyHonoured>().Elapsed, TimeSpan.Zero, TimeSpan.FromMilliseconds(450));
        engine.Dispose();
    }

    /// <summary>
    /// A budget that rises (or stays) was honoured when it changed: the tiers already held no more than the old one.
    /// Its time to honour is zero and its take-up (until the scheduler applied it) is kept beside it; a budget that
    /// falls is timed from its change as before.
    /// </summary>
    [Fact]
    public void A_budget_that_rises_is_honoured_at_its_change_and_one_that_falls_is_timed()
    {
        var (engine, owner) = OffloadedEngine();
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(engine, _factory, Layers(engine), planner: null));
        scheduler.Tell(new Observe(TestActor));
        long HalfSecondAgo() => System.Diagnostics.Stopwatch.GetTimestamp() - System.Diagnostics.Stopwatch.Frequency / 2;
        var first = new Memory.TierBudgets(1L << 30, 1L << 30, 0);
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 1, "first"), first) { ChangedAt = HalfSecondAgo() });
        var start = ExpectMsg<PolicyHonoured>();
        Assert.False(start.WithinAtChange, "the first budget has nothing before it to be within");
        Assert.InRange(start.Elapsed, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(30));

        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 2, "more"), first with { Gpu = 2L << 30 }) { ChangedAt = HalfSecondAgo() });
        var rise = ExpectMsg<PolicyHonoured>();
        Assert.True(rise.WithinAtChange, $"{rise}");
        Assert.Equal(TimeSpan.Zero, rise.Elapsed);
        Assert.InRange(rise.TakeUp, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(30));

        var held = engine.DeviceBytesHeld!.Value;
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 1, "less"), first with { Gpu = held + (64L << 20) }) { ChangedAt = HalfSecondAgo() });
        var fall = ExpectMsg<PolicyHonoured>();
        Assert.False(fall.WithinAtChange, $"{fall}");
        Assert.InRange(fall.Elapsed, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(30));
        Assert.Equal(fall.Elapsed, fall.TakeUp);
        owner.Dispose();
    }

    /// <summary>
    /// A fall that the weights' move meets (their device share goes to the CPU) is honoured once enough of them have
    /// left the device, not after the last one: the weights go one by one, and the first brings the tier within.
    /// </summary>
    [Fact]
    public void A_fall_that_moves_weights_off_the_device_is_honoured_once_enough_have_left()
    {
        var (engine, owner) = OffloadedEngine();
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(engine, _factory, Layers(engine), planner: null));
        scheduler.Tell(new Observe(TestActor));
        var first = new Memory.TierBudgets(1L << 30, 1L << 30, 0);
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 1, "first"), first));
        ExpectMsg<PolicyHonoured>();
        var held = engine.DeviceBytesHeld!.Value;
        Assert.True(held > 0, "the weights' device share is held on the device tier");

        var weightsOff = new Policy(1, 1, TierFractions.AllCpu, TierFractions.AllCpu, new TierFractions(0.5, 0.5, 0)) { CpuAttention = true };
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 1, "weights off") { Runtime = weightsOff }, first with { Gpu = held - 1 }));
        var fall = ExpectMsg<PolicyHonoured>();
        Assert.False(fall.WithinAtChange, $"{fall}");
        Assert.StartsWith("re-place until within", fall.ApplyingParts);
        // The move went on after the honour: every weight left the device.
        AwaitAssert(() => Assert.Equal(0, engine.DeviceBytesHeld!.Value));
        owner.Dispose();
    }

    /// <summary>
    /// A step's tokens are on their way from the device (their fence not ready) when a smaller policy arrives: the
    /// scheduler, reading its mail while it waits, drops the last batches then and there, abandoning their tokens (the
    /// sequences resume from their progress), and honours the policy before any token of the step is appended.
    /// </summary>
    [Fact]
    public void A_policy_arriving_while_a_steps_tokens_are_in_flight_drops_batches_before_they_land()
    {
        var gate = new TokenGate();
        var items = Enumerable.Range(0, 6).Select(i => Item(i) with { Request = Request(i) with { Temperature = 0.0 } }).ToArray();
        var (engine, scheduler) = StartGated(gate, items);
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(2, 1, "small"), Memory.TierBudgets.None));
        Assert.True(ExpectMsg<PolicyHonoured>().Dropped);
        var checkpointed = ExpectMsg<Checkpointed>();
        Assert.Equal(["k2", "k3", "k4", "k5"], checkpointed.Items.Select(c => c.Key).Order());
        Assert.All(checkpointed.Items, c => Assert.Empty(c.Checkpoint.OutputIds));
        var dropped = ExpectMsg<BatchesDropped>();
        Assert.Equal((1, 2, 4), (dropped.Block, dropped.Batches, dropped.Sequences));

        gate.Open();
        Assert.Equal(Reference(items), Results(6));
        engine.Dispose();
    }

    /// <summary>
    /// A smaller policy arrives while the tokens that finish every sequence of the block are on their way: nothing is
    /// dropped or requeued (the batches' caches go, their last tokens still land) and every request finishes once.
    /// </summary>
    [Fact]
    public void A_policy_arriving_while_the_last_tokens_are_in_flight_drops_nothing_that_is_finishing()
    {
        var gate = new TokenGate();
        // One token each: the prefill's tokens finish every sequence.
        var items = Enumerable.Range(0, 6).Select(i => Item(i) with { Request = Request(i) with { Temperature = 0.0, MaxTokens = 1 } }).ToArray();
        var (engine, scheduler) = StartGated(gate, items);
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(2, 1, "small"), Memory.TierBudgets.None));
        Assert.False(ExpectMsg<PolicyHonoured>().Dropped);
        gate.Open();
        var results = Results(6, message => Assert.False(message is BatchesDropped or Checkpointed, $"a finishing batch was dropped: {message}"));
        Assert.Equal(Reference(items), results);
        engine.Dispose();
    }

    /// <summary>Token fences that stay unready until the test opens them; signals once the first three were asked for.</summary>
    private sealed class TokenGate
    {
        private volatile bool _open;
        private int _launched;
        public CountdownEvent Launched { get; } = new(3);
        public void Open() => _open = true;

        public IReadyFence Fence()
        {
            if (Interlocked.Increment(ref _launched) <= 3) Launched.Signal();
            return new GateFence(this);
        }

        private sealed class GateFence(TokenGate gate) : IReadyFence
        {
            public bool IsReady => gate._open;

            public void Dispose()
            {
            }
        }
    }

    /// <summary>
    /// Every block start and finish brings a random policy, most of them while a block runs. With the cache attended in
    /// place on the device, the changes are signalled as a planner signals them: a decoding layer of a one-batch step in
    /// progress stops for each and runs again unless the change dropped its batch.
    /// </summary>
    [Theory]
    [InlineData("resident")]
    [InlineData("offloaded")]
    [InlineData("offloaded, cache on the device, changes signalled")]
    public void Random_policy_changes_during_a_job_lose_nothing_and_change_no_output(string engineKind)
    {
        var (engine, owner) = engineKind switch
        {
            "resident" => (ResidentEngine(), new Owner()),
            "offloaded" => OffloadedEngine(),
            _ => OffloadedEngine(cacheOnDevice: true),
        };
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(engine, _factory, Layers(engine), planner: null));
        var random = new Random(2026);
        Func<BlockPolicy> pick = () => new BlockPolicy(1 + random.Next(3), 1 + random.Next(3), "random");
        // Every block start and every finished block brings a new policy: most arrive while a block runs.
        var sent = new[] { 1 }; // the starting policy below; the chaos actor counts the ones it sends
        var signal = engineKind.EndsWith("signalled") ? engine.Changes : null;
        // On the tensor thread beside the scheduler and the layers: its answer to a block's start is in the scheduler's
        // mailbox before the block's first layer ends, so which block each policy meets, and the drops, do not depend on timing.
        var chaos = Sys.ActorOf(Akka.Actor.Props.Create(() => new Chaos(scheduler, pick, sent, signal)).WithDispatcher(ActorInferSettings.TensorDispatcher));
        scheduler.Tell(new Observe(chaos));
        scheduler.Tell(new Observe(TestActor));
        const int count = 40;
        scheduler.Tell(new Enqueue(Enumerable.Range(0, count).Select(Item).ToArray()));
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(3, 3, "start"), Memory.TierBudgets.None));

        var results = new Dictionary<string, string>();
        var drops = 0;
        var honoured = 0;
        while (results.Count < count)
        {
            var message = ExpectMsg<object>(TimeSpan.FromSeconds(60));
            if (message is BatchesDropped) drops++;
            if (message is PolicyHonoured) honoured++;
            if (message is Finished finished)
                foreach (var r in finished.Results)
                    Assert.True(results.TryAdd(r.Key, OutputIds(r.ResultLine)), $"{r.Key} answered twice");
        }
        Assert.True(drops > 0, "the random policies should have made the scheduler drop batches");
        Assert.Equal(Reference(count), results);
        // Nothing is answered after every request has been: no request ran twice.
        var late = ReceiveWhile<object>(TimeSpan.FromMilliseconds(300), m => m);
        Assert.DoesNotContain(late, m => m is Finished);
        honoured += late.Count(m => m is PolicyHonoured);
        // Every policy sent was honoured once: the block shed its batches, fitted it already, or ended.
        Assert.Equal(Volatile.Read(ref sent[0]), honoured);
        // Each signalled change was taken: nothing stops for a change any more. Layers stopped for some of them.
        Assert.False(signal?.Waiting ?? false);
        if (signal is not null) Assert.True(signal.Yields > 0, "no layer stopped for a change");
        Sys.Stop(scheduler);
        engine.Dispose();
        owner.Dispose();
    }

    private sealed class Chaos : ReceiveActor
    {
        public Chaos(IActorRef scheduler, Func<BlockPolicy> pick, int[] sent, ActorInfer.Runtime.Schedule.ChangeSignal? signal)
        {
            void Send()
            {
                Interlocked.Increment(ref sent[0]);
                scheduler.Tell(new PlannerProtocol.PolicyChanged(pick(), Memory.TierBudgets.None) { Signalled = signal is not null });
                signal?.Sent();
            }
            Receive<BlockStarted>(_ => Send());
            Receive<BlockFinished>(_ => Send());
            // Signalled: also the next change as soon as one is honoured (the first 200), sent before the scheduler's next
            // layer starts, which then stops for it where it can.
            var more = signal is null ? 0 : 200;
            Receive<PolicyHonoured>(_ =>
            {
                if (more-- > 0) Send();
            });
            ReceiveAny(_ => { });
        }
    }

    [Fact]
    public void Requests_that_can_never_fit_wait_then_fail_with_the_reason_and_later_ones_run_when_memory_returns()
    {
        var engine = ResidentEngine();
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(engine, _factory, Layers(engine), planner: null, maxWaitForMemory: TimeSpan.FromMilliseconds(400)));
        scheduler.Tell(new PlannerProtocol.PolicyChanged(null, Memory.TierBudgets.None));
        scheduler.Tell(new Enqueue([Item(0), Item(1)]));

        // Nothing fits: no block starts, and after the limit both fail, naming why.
        var failed = ExpectMsg<Finished>(TimeSpan.FromSeconds(10));
        var lines = failed.Results.ToList();
        if (lines.Count < 2) lines.AddRange(ExpectMsg<Finished>(TimeSpan.FromSeconds(10)).Results);
        Assert.Equal(["k0", "k1"], lines.Select(r => r.Key).Order());
        Assert.All(lines, r => Assert.Contains("no memory", r.ResultLine));
        scheduler.Tell(GetStatus.Instance);
        Assert.Equal(0, ExpectMsg<SchedulerStatus>().Queued);

        // Memory returns: a new request runs and its tokens are the reference's.
        scheduler.Tell(new Enqueue([Item(2)]));
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 1, "back"), Memory.TierBudgets.None));
        var done = ExpectMsg<Finished>(TimeSpan.FromSeconds(30));
        Assert.Equal(Reference(3)["k2"], OutputIds(done.Results.Single().ResultLine));
        engine.Dispose();
    }

    public new void Dispose() => base.Dispose();
}
