using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using static TorchSharp.torch;

namespace ActorInfer.Actors.Engine;

/// <summary>One GPU batch's resources on the engine (its KV cache per layer, layout and masks).</summary>
public interface IGpuBatch : IDisposable
{
    IReadOnlyList<SequenceState> Sequences { get; }
    bool AllFinished { get; }

    /// <summary>Freed (dropped from its block, or its block ended): a computation still addressed to it is not run.</summary>
    bool Disposed { get; }
}

/// <summary>
/// The tensor work the actors drive, one (layer, GPU batch, step) at a time, so that the order of work is the
/// scheduler's (the zig-zag block schedule) and not the engine's. Every method must be called on the tensor
/// dispatcher's thread. Tensors returned are owned by the caller; a tensor passed in stays the caller's.
/// The all-resident engine is <see cref="ResidentEngine"/>; the offloading runtime plugs in here.
/// </summary>
public interface IInferenceEngine : IDisposable
{
    ModelConfig Config { get; }

    /// <summary>Allocates a batch's cache for its sequences (each may already have generated tokens: resumed).</summary>
    IGpuBatch Open(IReadOnlyList<SequenceState> sequences);

    /// <summary>The input hidden state of <paramref name="step"/>: the prompts at prefill, the last tokens after.</summary>
    Tensor Embed(IGpuBatch batch, TokenStep step);

    /// <summary>One decoder layer over one batch's hidden state, writing the batch's cache of that layer.</summary>
    Tensor RunLayer(LayerIndex layer, IGpuBatch batch, Tensor hidden, TokenStep step);

    /// <summary>
    /// Like <see cref="RunLayer"/>, but the layer may stop at a yield point while a budget change is on its way
    /// (<see cref="Changes"/>): then null, nothing of the layer kept, the engine at a layer boundary; run it again.
    /// </summary>
    Tensor? RunLayerOrYield(LayerIndex layer, IGpuBatch batch, Tensor hidden, TokenStep step) => RunLayer(layer, batch, hidden, step);

    /// <summary>
    /// Raised by whoever sends the scheduler a budget change, after sending it, and lowered by the scheduler as it takes
    /// one (<see cref="PlannerProtocol.PolicyChanged.Signalled"/>); null for an engine whose layers never stop early.
    /// </summary>
    Runtime.Schedule.ChangeSignal? Changes => null;

    /// <summary>
    /// The CUDA stream this engine's kernels run on, entered by the actors of its tensor thread before their work; null:
    /// the legacy default stream (one model on the device, or a CPU node).
    /// </summary>
    Runtime.Cuda.ComputeStream? ComputeStream => null;

    /// <summary>The nice value and thread cap its tensor thread takes (a model below the node's top priority); null: unchanged.</summary>
    Scheduling.HostShare? HostShare => null;

    /// <summary>
    /// Whether a resumed sequence must regenerate its tokens from its prompt rather than resume from them (a batch-invariant
    /// engine forms each token by decoding in every run; a resumed prompt would form the tokens it carries by a prefill).
    /// </summary>
    bool RegeneratesResumed => false;

    /// <summary>Tokens chosen over the engine's life, every block's (a dropped batch's sequences keep theirs); 0 where not counted.</summary>
    long TokensGenerated => 0;

    /// <summary>Logits of the last position, and one new token appended to every unfinished sequence.</summary>
    void ChooseTokens(IGpuBatch batch, Tensor hidden, TokenStep step);

    /// <summary>
    /// Like <see cref="ChooseTokens"/>, but the tokens may still be on their way from the device: the caller appends
    /// them with <see cref="PendingTokens.Complete"/> once <see cref="PendingTokens.IsReady"/> (or disposes them to
    /// abandon the step's tokens), and reads its mail meanwhile instead of blocking on the device. By default the
    /// tokens are appended before this returns.
    /// </summary>
    PendingTokens BeginChooseTokens(IGpuBatch batch, Tensor hidden, TokenStep step)
    {
        ChooseTokens(batch, hidden, step);
        return PendingTokens.Done();
    }

    /// <summary>
    /// Whether <paramref name="remaining"/> (batches of the running block, in block order; empty between blocks)
    /// would hold no more than the budgets once <paramref name="policy"/>'s placement is applied. An engine without
    /// tier accounting fits whatever the block size allows.
    /// </summary>
    bool Fits(IReadOnlyList<IGpuBatch> remaining, BlockPolicy policy, TierBudgets budgets) => true;

    /// <summary>
    /// Applies a policy's placement (weights move between tiers) and the budgets (the tiers refuse what exceeds
    /// them from now on): between blocks, or at a layer boundary of the running block after its batches were
    /// dropped down to what fits. <paramref name="moved"/>, when given, is called after each weight moves (what the
    /// tiers hold has just gone down, or up). A policy raised from a firm one (<see cref="BlockPolicy.GrowsFrom"/>) may be
    /// applied as the firm placement, its raised weights growing in as the blocks stream them
    /// (<see cref="GrowWeightsTowards"/>), where the engine can grow them and the budgets are known.
    /// </summary>
    void Apply(BlockPolicy policy, TierBudgets budgets, Action? moved = null)
    {
    }

    /// <summary>
    /// The running block keeps the placement in force where <paramref name="target"/> only moves more weights onto the device
    /// (a rise left to the block's end): meanwhile the weights <paramref name="target"/> places there may stay on the device
    /// as the block's layers copy them in anyway, within <paramref name="budgets"/>; and so for each later block as it opens,
    /// until the next <see cref="Apply"/> stops it. An engine without tier accounting does nothing.
    /// </summary>
    void GrowWeightsTowards(ActorInfer.Planning.Policy target, TierBudgets budgets)
    {
    }

    /// <summary>The offloading placement in force (null: an engine without one).</summary>
    ActorInfer.Planning.Policy? Placement => null;

    /// <summary>
    /// Whether the running block's next position starts a layer (its first batch not yet computed there), or no step is
    /// in progress: where batches may leave and weights move. True for an engine whose work has no such order.
    /// </summary>
    bool AtLayerBoundary => true;

    /// <summary>Whether what the engine holds now is within the budgets (true for an engine without tier accounting).</summary>
    bool Within(TierBudgets budgets) => true;

    /// <summary>Bytes the compute tier holds now; null for an engine without tier accounting.</summary>
    long? DeviceBytesHeld => null;

    /// <summary>
    /// The sequences the next block will hold under <paramref name="policy"/>: the engine makes ready, off the calling
    /// thread, the host buffers that block will take, and lets go of those no block will. Null when nothing changed (or
    /// the engine keeps no host buffers).
    /// </summary>
    Runtime.Tiers.HostBufferPreparation? Prepare(BlockPolicy policy, IReadOnlyList<SequenceState> sequences) => null;

    /// <summary>Where the engine's large host buffers came from so far; null for an engine without a CPU tier.</summary>
    Runtime.Tiers.HostBufferCounts? HostBuffers => null;
}
