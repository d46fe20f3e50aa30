using ActorInfer.Actors.Engine;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Actors.Layers;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Layers;
using Akka.Actor;
using Akka.TestKit.Xunit2;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;
using static TorchSharp.torch;

namespace ActorInfer.Actors.Tests;

/// <summary>The layer actors and the block scheduler on the tiny random model, against the reference generator.</summary>
public sealed class SchedulingSpecs : TestKit, IDisposable
{
    private readonly ResidentModel _model = TestModels.LoadTiny();
    private readonly CompletionFactory _factory = new(TestModels.Tiny, null);
    private readonly ResidentEngine _engine;

    public SchedulingSpecs() : base(TestModels.ActorConfig)
    {
        // These specs follow blocks; when each policy is honoured is ElasticSpecs' business.
        IgnoreMessages(m => m is PolicyHonoured);
        _engine = new ResidentEngine(_model, _factory.Decode);
    }

    private IActorRef[] Layers() =>
        Enumerable.Range(0, TestModels.Tiny.NumHiddenLayers).Select(i => Sys.ActorOf(LayerProtocol.Props(new LayerIndex(i), _engine))).ToArray();

    private static WorkItem Item(int i) => new($"k{i}", $"r{i}", TestModels.Request(i), Seed: i);

    /// <summary>What the all-on-device generator produces for the same requests in the same batches.</summary>
    private string[] Reference(IEnumerable<int> indices, int batchSize) =>
        indices.Chunk(batchSize).SelectMany(chunk =>
        {
            var states = chunk.Select(i => _factory.Create(TestModels.Request(i), i)).ToList();
            BatchGenerator.Run(_model, states, _factory.Decode);
            return states.Select((s, j) => CompletionJson.ToJsonLine(_factory.Result(s, $"r{chunk[j]}")));
        }).ToArray();

    [Fact]
    public void A_layer_actor_computes_its_layer_on_the_tensor_dispatcher()
    {
        var layer = Sys.ActorOf(LayerProtocol.Props(new LayerIndex(1), _engine));
        var states = new[] { _factory.Create(TestModels.Request(1), 1), _factory.Create(TestModels.Request(2), 2) };
        using var work = _engine.Open(states);
        var hidden = _engine.Embed(work, TokenStep.Prefill);
        Tensor expected;
        using (var layout = _engine.Open(states))
        using (var input = _engine.Embed(layout, TokenStep.Prefill))
            expected = _engine.RunLayer(new LayerIndex(1), layout, input, TokenStep.Prefill);
        layer.Tell(new LayerProtocol.Compute(new GpuBatchIndex(3), TokenStep.Prefill, work, hidden));
        var computed = ExpectMsg<LayerProtocol.Computed>();
        Assert.Equal((new LayerIndex(1), new GpuBatchIndex(3), TokenStep.Prefill), (computed.Layer, computed.Batch, computed.Step));
        using (expected)
        using (computed.Hidden)
            Assert.True(computed.Hidden.allclose(expected));
        Assert.True(hidden.IsInvalid, "the layer actor disposes the hidden state it was given");
    }

    [Fact]
    public void Higher_priorities_run_first_and_withdrawn_requests_never_run()
    {
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(_engine, _factory, Layers(), planner: null));
        scheduler.Tell(new Enqueue([Item(0), Item(1) with { Priority = 5 }, Item(2), Item(3) with { Priority = 5 }, Item(4)]));
        scheduler.Tell(new Withdraw(["k2"]));
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(2, 1, "test"), Memory.TierBudgets.None));
        var order = new List<string>();
        while (order.Count < 4) order.AddRange(ExpectMsg<Finished>().Results.Select(r => r.Key));
        Assert.Equal(["k1", "k3", "k0", "k4"], order);
        ExpectNoMsg(TimeSpan.FromMilliseconds(100));
    }

    [Fact]
    public void A_block_runs_the_zig_zag_order_and_matches_the_reference_generator()
    {
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(_engine, _factory, Layers(), planner: null));
        scheduler.Tell(new Observe(TestActor));
        scheduler.Tell(new Enqueue(Enumerable.Range(0, 7).Select(Item).ToArray()));
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(3, 2, "test"), Memory.TierBudgets.None));

        ExpectMsg<BlockStarted>().Should(new BlockStarted(1, new BlockPolicy(3, 2, "test"), 6, 2));
        var first = ExpectMsg<Finished>();
        ExpectMsg<BlockFinished>(m => m.Block == 1 && m.Sequences == 6);
        ExpectMsg<BlockStarted>().Should(new BlockStarted(2, new BlockPolicy(3, 2, "test"), 1, 1));
        var second = ExpectMsg<Finished>();
        ExpectMsg<BlockFinished>(m => m.Block == 2);

        var lines = first.Results.Concat(second.Results).ToArray();
        Assert.Equal(Enumerable.Range(0, 7).Select(i => $"k{i}"), lines.Select(r => r.Key));
        Assert.Equal(Reference(Enumerable.Range(0, 6), 3).Concat(Reference([6], 3)), lines.Select(r => r.ResultLine));
    }

    [Fact]
    public void A_policy_change_mid_block_takes_effect_at_the_next_block()
    {
        // The first layer is a probe, so the test holds the block provably mid-flight while the policy changes.
        var layers = Layers();
        var gate = CreateTestProbe();
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(_engine, _factory, [gate.Ref, layers[1]], planner: null));
        scheduler.Tell(new Observe(TestActor));
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(2, 1, "small"), Memory.TierBudgets.None));
        scheduler.Tell(new Enqueue(Enumerable.Range(0, 8).Select(Item).ToArray()));
        ExpectMsg<BlockStarted>().Should(new BlockStarted(1, new BlockPolicy(2, 1, "small"), 2, 1));

        var held = gate.ExpectMsg<LayerProtocol.Compute>();
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(3, 2, "large"), Memory.TierBudgets.None));
        scheduler.Tell(GetStatus.Instance);
        ExpectMsg<SchedulerStatus>().Should(new SchedulerStatus(6, 1, new BlockPolicy(3, 2, "large")));
        Assert.Equal(TokenStep.Prefill, held.Step);
        gate.Forward(layers[0]);
        // Every later layer-0 step of this block goes through the gate too.
        gate.SetAutoPilot(new Akka.TestKit.DelegateAutoPilot((sender, message) =>
        {
            layers[0].Tell(message, sender);
            return Akka.TestKit.AutoPilot.KeepRunning;
        }));

        ExpectMsg<Finished>().Results.Count.Should(2);
        ExpectMsg<BlockFinished>(m => m.Block == 1);
        ExpectMsg<BlockStarted>().Should(new BlockStarted(2, new BlockPolicy(3, 2, "large"), 6, 2));
        var rest = ExpectMsg<Finished>();
        Assert.Equal(Reference(Enumerable.Range(2, 6), 3), rest.Results.Select(r => r.ResultLine));
    }

    [Fact]
    public void Without_a_policy_no_block_starts()
    {
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(_engine, _factory, Layers(), planner: null));
        scheduler.Tell(new Observe(TestActor));
        scheduler.Tell(new Enqueue([Item(0)]));
        scheduler.Tell(new PlannerProtocol.PolicyChanged(null, Memory.TierBudgets.None));
        scheduler.Tell(GetStatus.Instance);
        ExpectMsg<SchedulerStatus>().Should(new SchedulerStatus(1, null, null));
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 1, "x"), Memory.TierBudgets.None));
        ExpectMsg<BlockStarted>();
        ExpectMsg<Finished>();
    }

    [Fact]
    public void A_streaming_request_has_each_step_s_tokens_published_before_its_result()
    {
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(_engine, _factory, Layers(), planner: null));
        Sys.EventStream.Subscribe(TestActor, typeof(TokensLanded));
        // One request that streams beside one that does not, in one block of two.
        var streaming = Item(1) with { Request = TestModels.Request(1, maxTokens: 6) with { Stream = true } };
        scheduler.Tell(new Enqueue([streaming, Item(2)]));
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(2, 1, "test"), Memory.TierBudgets.None));
        var landed = new List<LandedTokens>();
        Finished? finished = null;
        while (finished is null)
            switch (ExpectMsg<object>(TimeSpan.FromSeconds(10)))
            {
                case TokensLanded m: landed.AddRange(m.Sequences); break;
                case Finished m: finished = m; break;
            }
        // A step's tokens each, in order, every one before the result; none of the request that does not stream.
        Assert.All(landed, l => Assert.Equal("k1", l.Key));
        Assert.Equal([0, 1, 2, 3, 4, 5], landed.Select(l => l.From));
        Assert.All(landed, l => Assert.Single(l.Ids));
        var result = System.Text.Json.JsonDocument.Parse(finished.Results.Single(r => r.Key == "k1").ResultLine).RootElement;
        Assert.Equal(result.GetProperty("output_ids").EnumerateArray().Select(e => e.GetInt32()), landed.SelectMany(l => l.Ids));
        ExpectNoMsg(TimeSpan.FromMilliseconds(100));
    }

    public new void Dispose()
    {
        Shutdown();
        _model.Dispose();
        base.Dispose();
    }
}
