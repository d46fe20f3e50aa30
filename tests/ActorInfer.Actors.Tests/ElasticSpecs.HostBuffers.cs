using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Layers;
using ActorInfer.Actors.Planner;
using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Runtime.Tiers;
using Akka.Actor;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;
using static TorchSharp.torch;
using LayerIndex = ActorInfer.Runtime.Schedule.LayerIndex;
using TokenStep = ActorInfer.Runtime.Schedule.TokenStep;

namespace ActorInfer.Actors.Tests;

/// <summary>
/// When a policy applies, the scheduler tells the engine the sequences of the block it will start next, so that the
/// engine prepares that block's host buffers in the background.
/// </summary>
public sealed partial class ElasticSpecs
{
    /// <summary>
    /// A smaller policy arrives in the prefill: two batches are dropped and requeued, and the engine is told, under the
    /// new policy, exactly the sequences that the next block then opens (the requeued ones, ahead of the rest); the
    /// requests finish unchanged.
    /// </summary>
    [Fact]
    public void A_policy_applied_mid_block_names_the_next_block_to_the_engine_before_it_opens()
    {
        var engine = new PreparingEngine(ResidentEngine());
        var (layers, gate, scheduler) = StartWithLayerZeroHeld(engine, new BlockPolicy(2, 3, "large"), Enumerable.Range(0, 8).Select(Item).ToArray());
        ExpectMsg<BlockStarted>(m => m.Block == 1 && m.Sequences == 6);
        // The first policy came before any work: nothing to prepare then, and a block that starts at once prepares nothing.
        Assert.DoesNotContain(engine.Calls, c => c.Prepared);

        var held = gate.ExpectMsg<LayerProtocol.Compute>();
        var small = new BlockPolicy(2, 1, "small");
        scheduler.Tell(new PlannerProtocol.PolicyChanged(small, Memory.TierBudgets.None));
        ForwardAll(gate, layers[0]);
        layers[0].Tell(held, scheduler);
        var results = Results(8);

        var prepared = Assert.Single(engine.Calls, c => c.Prepared);
        Assert.Equal(small, prepared.Policy);
        // Block 2 is the first block opened after the policy applied: the two latest requeued sequences, unchanged.
        var next = engine.Calls[engine.Calls.IndexOf(prepared) + 1];
        Assert.False(next.Prepared);
        Assert.Equal(2, prepared.Prompts.Count);
        Assert.Equal(next.Prompts, prepared.Prompts);
        Assert.Equal(Reference(8), results);
        engine.Dispose();
    }

    /// <summary>The resident engine, recording the blocks it is told of and the batches it opens, in order.</summary>
    private sealed class PreparingEngine(IInferenceEngine inner) : IInferenceEngine
    {
        public sealed record Call(bool Prepared, BlockPolicy? Policy, List<string> Prompts);

        private readonly Lock _gate = new();
        private readonly List<Call> _calls = [];

        public List<Call> Calls
        {
            get { lock (_gate) return [.. _calls]; }
        }

        private static List<string> Prompts(IReadOnlyList<SequenceState> sequences) =>
            sequences.Select(s => $"{string.Join(",", s.PromptIds)}+{s.OutputIds.Count}").ToList();

        public HostBufferPreparation? Prepare(BlockPolicy policy, IReadOnlyList<SequenceState> sequences)
        {
            lock (_gate) _calls.Add(new Call(true, policy, Prompts(sequences)));
            return new HostBufferPreparation(0, 0);
        }

        public IGpuBatch Open(IReadOnlyList<SequenceState> sequences)
        {
            lock (_gate)
            {
                // The batches of one block are opened one after the other: one entry per block.
                if (_calls.Count > 0 && !_calls[^1].Prepared && _calls[^1].Policy is null && _opening) _calls[^1].Prompts.AddRange(Prompts(sequences));
                else _calls.Add(new Call(false, null, Prompts(sequences)));
                _opening = true;
            }
            return inner.Open(sequences);
        }

        private bool _opening;

        public ModelConfig Config => inner.Config;

        public Tensor Embed(IGpuBatch batch, TokenStep step)
        {
            lock (_gate) _opening = false;
            return inner.Embed(batch, step);
        }

        public Tensor RunLayer(LayerIndex layer, IGpuBatch batch, Tensor hidden, TokenStep step) => inner.RunLayer(layer, batch, hidden, step);

        public void ChooseTokens(IGpuBatch batch, Tensor hidden, TokenStep step) => inner.ChooseTokens(batch, hidden, step);

        public PendingTokens BeginChooseTokens(IGpuBatch batch, Tensor hidden, TokenStep step) => inner.BeginChooseTokens(batch, hidden, step);

        public void Dispose() => inner.Dispose();
    }
}
