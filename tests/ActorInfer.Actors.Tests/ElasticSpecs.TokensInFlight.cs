using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Weights;
using Akka.Actor;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;
using static TorchSharp.torch;

namespace ActorInfer.Actors.Tests;

/// <summary>
/// A smaller policy arriving while a step's tokens are on their way from the device (their fences held unready by a
/// <see cref="TokenGate"/>): batches are dropped before their tokens land, and none that is finishing is dropped.
/// </summary>
public sealed partial class ElasticSpecs
{
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
}
