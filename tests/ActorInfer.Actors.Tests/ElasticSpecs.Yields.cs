using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Runtime.Schedule;
using Akka.Actor;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;
using static TorchSharp.torch;
using LayerIndex = ActorInfer.Runtime.Schedule.LayerIndex;
using TokenStep = ActorInfer.Runtime.Schedule.TokenStep;

namespace ActorInfer.Actors.Tests;

/// <summary>
/// Work in progress that stops for a budget change on its way: a decoder layer of a one-batch step, a step's end
/// between two batches' output heads, and a step's start; the change then applies there, and no output changes.
/// </summary>
public sealed partial class ElasticSpecs
{
    /// <summary>
    /// With a change always on its way (the signal raised, no change sent), every decoder layer of the one-batch blocks
    /// (prefill and decoding) stops once at a yield point, is sent again by the scheduler without leave to stop, and runs to its end: the
    /// requests finish unchanged, and the layers stopped exactly once per decoding step and layer.
    /// </summary>
    [Fact]
    public void Layers_stopped_for_a_change_run_again_and_no_output_changes()
    {
        // Two blocks: requests 0 and 1 (6 and 7 tokens: a prefill and 6 decoding steps), 2 and 3 (8 and 9 tokens: a prefill
        // and 8 steps), their caches on the device, so the prefill's layers stop as the decoding steps' do; each step's end
        // (the prefill's too) also stops once before the next step starts.
        Assert.Equal((1 + 6 + 1 + 8) * Config.NumHiddenLayers + (1 + 6) + (1 + 8), StopsWithAChangeAlwaysOnItsWay(new BlockPolicy(2, 1, "one batch"), 4));
    }

    /// <summary>
    /// With a change always on its way (the signal raised, no change sent), each step's end stops once after the first
    /// batch's output head, reads its mail and goes on with the other heads, and once more before the next step starts:
    /// the requests finish unchanged.
    /// </summary>
    [Fact]
    public void A_step_end_stops_between_two_batches_heads_for_a_change_and_no_output_changes()
    {
        // One block of three one-sequence batches (6, 7 and 8 tokens): the prefill and decoding steps 1 to 6 end with two
        // or three heads (one stop each); step 7 has one batch, whose layers stop instead (one stop each); and each of the
        // eight steps stops once more once its tokens have landed, before the next step starts.
        Assert.Equal(7 + Config.NumHiddenLayers + 8, StopsWithAChangeAlwaysOnItsWay(new BlockPolicy(1, 3, "three batches"), 3));
    }

    /// <summary>
    /// Runs the first <paramref name="count"/> requests under <paramref name="policy"/> with the change signal raised and no
    /// change sent: the outputs must be the reference's. Returns how many times work stopped for the change.
    /// </summary>
    private long StopsWithAChangeAlwaysOnItsWay(BlockPolicy policy, int count)
    {
        var (engine, owner) = OffloadedEngine(cacheOnDevice: true);
        var changes = engine.Changes!;
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(engine, _factory, Layers(engine), planner: null));
        changes.Sent();
        scheduler.Tell(new PlannerProtocol.PolicyChanged(policy, Memory.TierBudgets.None));
        scheduler.Tell(new Observe(TestActor));
        var items = Enumerable.Range(0, count).Select(Item).ToArray();
        scheduler.Tell(new Enqueue(items));
        Assert.Equal(Reference(items), Results(items.Length));
        var stops = changes.Yields;
        changes.Received();
        Sys.Stop(scheduler);
        engine.Dispose();
        owner.Dispose();
        return stops;
    }

    /// <summary>
    /// A change that arrives while a step's output heads run (sent from inside the first batch's head of decoding step 2)
    /// applies before the other heads: the two batches whose heads had not run are dropped (the engine takes them out of
    /// the step ahead of its cursor), the first batch's tokens land, and every request still finishes once, unchanged.
    /// </summary>
    [Fact]
    public void A_change_during_a_step_s_output_heads_drops_the_batches_not_yet_through_their_head()
    {
        var (drops, honoured, headsInStep) = RunWithChangeDuringHead(new TokenStep(2));
        // Of that step's three heads only the first ran: the change applied before the others.
        Assert.Equal(1, headsInStep);
        // The two batches after the first, each of one sequence, were dropped by that change, at its arrival.
        var drop = Assert.Single(drops);
        Assert.Equal((2, 2), (drop.Batches, drop.Sequences));
        Assert.Contains(honoured, h => h.Dropped);
    }

    /// <summary>
    /// A change that arrives after the first output head of the step whose tokens finish the first batch (request 0's
    /// sixth token, decoding step 5): that batch, the step's leading one, gives up its cache at once while its tokens
    /// still land, the last batch is dropped to fit one running sequence, and the middle batch's head still runs in the
    /// same step (the engine's step goes on without its leading batch): every request finishes once, unchanged.
    /// </summary>
    [Fact]
    public void A_change_after_the_head_that_finishes_the_leading_batch_keeps_the_step_for_the_other_heads()
    {
        var (drops, _, headsInStep) = RunWithChangeDuringHead(new TokenStep(5));
        // The first batch's head and the middle batch's head ran in that step; the last batch was dropped before its head.
        Assert.Equal(2, headsInStep);
        var drop = Assert.Single(drops);
        Assert.Equal((1, 1), (drop.Batches, drop.Sequences));
    }

    /// <summary>
    /// Requests 0 to 2 in three one-sequence batches, a change to one batch of one sent from inside the first output head
    /// of <paramref name="step"/>: asserts the outputs are the unpressured ones and the change was sent and received;
    /// returns the drops and honours told, and how many of that step's heads ran.
    /// </summary>
    private (List<BatchesDropped> Drops, List<PolicyHonoured> Honoured, int HeadsInStep) RunWithChangeDuringHead(TokenStep step)
    {
        var (inner, owner) = OffloadedEngine(cacheOnDevice: true);
        var engine = new ChangeFromCall(inner, c => c.Kind == "head" && c.Step == step, new BlockPolicy(1, 1, "one batch"));
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(engine, _factory, Layers(engine), planner: null));
        engine.Scheduler = scheduler;
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 3, "three batches"), Memory.TierBudgets.None));
        scheduler.Tell(new Observe(TestActor));
        var items = Enumerable.Range(0, 3).Select(Item).ToArray();
        scheduler.Tell(new Enqueue(items));
        var drops = new List<BatchesDropped>();
        var honoured = new List<PolicyHonoured>();
        var results = Results(items.Length, m =>
        {
            if (m is BatchesDropped d) drops.Add(d);
            if (m is PolicyHonoured h) honoured.Add(h);
        });
        Assert.Equal(Reference(items), results);
        Assert.True(engine.Sent, "the change was not sent from a head");
        Assert.False(inner.Changes!.Waiting);
        Sys.Stop(scheduler);
        engine.Dispose();
        owner.Dispose();
        return (drops, honoured, engine.HeadsInStepOfSend);
    }

    /// <summary>
    /// A change that arrives while a step's tokens are being appended (sent from the engine's end-of-step notice of decoding
    /// step 2) applies before the next step's embeddings: it drops two of the three batches between the two steps, and
    /// every request still finishes once, unchanged.
    /// </summary>
    [Fact]
    public void A_change_while_a_step_s_tokens_land_applies_before_the_next_step_starts()
    {
        var (engine, owner) = OffloadedEngine(cacheOnDevice: true);
        var offloaded = (Engine.OffloadedEngine)engine;
        var scheduler = Sys.ActorOf(SchedulerProtocol.Props(engine, _factory, Layers(engine), planner: null));
        var sent = false;
        var yieldsAtSend = 0L;
        offloaded.StepDone = step =>
        {
            if (sent || step != 2) return;
            sent = true;
            yieldsAtSend = engine.Changes!.Yields;
            scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 1, "one batch"), Memory.TierBudgets.None) { Signalled = true });
            engine.Changes!.Sent();
        };
        scheduler.Tell(new PlannerProtocol.PolicyChanged(new BlockPolicy(1, 3, "three batches"), Memory.TierBudgets.None));
        scheduler.Tell(new Observe(TestActor));
        var items = Enumerable.Range(0, 3).Select(Item).ToArray();
        scheduler.Tell(new Enqueue(items));
        var drops = new List<BatchesDropped>();
        var results = Results(items.Length, m =>
        {
            if (m is BatchesDropped d) drops.Add(d);
        });
        Assert.Equal(Reference(items), results);
        Assert.True(sent, "the change was not sent while a step's tokens landed");
        var drop = Assert.Single(drops);
        Assert.Equal((2, 2), (drop.Batches, drop.Sequences));
        // The step's start stopped for it (before any layer of the next step could).
        Assert.Equal(yieldsAtSend + 1, engine.Changes!.Yields);
        Assert.False(engine.Changes!.Waiting);
        Sys.Stop(scheduler);
        engine.Dispose();
        owner.Dispose();
    }

    /// <summary>An engine call as <see cref="ChangeFromCall"/> records it: its number (from 1), kind (embed, layer, head) and step.</summary>
    private sealed record EngineCall(int Number, string Kind, TokenStep Step);

    /// <summary>
    /// The offloaded engine, with a budget change sent to the scheduler (as a planner sends one: into the mailbox, then the
    /// signal raised) from inside the first engine call that <c>sendsAt</c> picks, before the call runs; it records every call.
    /// </summary>
    private sealed class ChangeFromCall(IInferenceEngine inner, Func<EngineCall, bool> sendsAt, BlockPolicy change) : IInferenceEngine
    {
        public IActorRef? Scheduler { get; set; }
        public List<EngineCall> Calls { get; } = [];
        public EngineCall? SentFrom { get; private set; }
        public bool Sent => SentFrom is not null;

        /// <summary>The output heads run back to back from the sending one, in its step (the next step's embeddings end the run).</summary>
        public int HeadsInStepOfSend => SentFrom is { } from
            ? Calls.Skip(from.Number - 1).TakeWhile(c => c.Kind == "head" && c.Step == from.Step).Count()
            : 0;

        private void Record(string kind, TokenStep step)
        {
            var call = new EngineCall(Calls.Count + 1, kind, step);
            Calls.Add(call);
            if (Sent || !sendsAt(call)) return;
            SentFrom = call;
            Scheduler!.Tell(new PlannerProtocol.PolicyChanged(change, Memory.TierBudgets.None) { Signalled = true });
            inner.Changes!.Sent();
        }

        public ModelConfig Config => inner.Config;
        public IGpuBatch Open(IReadOnlyList<SequenceState> sequences) => inner.Open(sequences);

        public Tensor Embed(IGpuBatch batch, TokenStep step)
        {
            Record("embed", step);
            return inner.Embed(batch, step);
        }

        public Tensor RunLayer(LayerIndex layer, IGpuBatch batch, Tensor hidden, TokenStep step)
        {
            Record("layer", step);
            return inner.RunLayer(layer, batch, hidden, step);
        }

        public Tensor? RunLayerOrYield(LayerIndex layer, IGpuBatch batch, Tensor hidden, TokenStep step)
        {
            Record("layer", step);
            return inner.RunLayerOrYield(layer, batch, hidden, step);
        }

        public ChangeSignal? Changes => inner.Changes;

        public void ChooseTokens(IGpuBatch batch, Tensor hidden, TokenStep step)
        {
            Record("head", step);
            inner.ChooseTokens(batch, hidden, step);
        }

        public PendingTokens BeginChooseTokens(IGpuBatch batch, Tensor hidden, TokenStep step)
        {
            Record("head", step);
            return inner.BeginChooseTokens(batch, hidden, step);
        }

        public bool Fits(IReadOnlyList<IGpuBatch> remaining, BlockPolicy policy, Memory.TierBudgets budgets) => inner.Fits(remaining, policy, budgets);
        public void Apply(BlockPolicy policy, Memory.TierBudgets budgets, Action? moved = null) => inner.Apply(policy, budgets, moved);
        public bool AtLayerBoundary => inner.AtLayerBoundary;
        public bool Within(Memory.TierBudgets budgets) => inner.Within(budgets);
        public long? DeviceBytesHeld => inner.DeviceBytesHeld;
        public void Dispose() => inner.Dispose();
    }
}
