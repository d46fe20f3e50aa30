using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Engine;
using Akka.Actor;
using static TorchSharp.torch;

namespace ActorInfer.Actors.Layers;

/// <summary>
/// A layer actor (one per decoder layer) runs its layer for one GPU batch when the batch's hidden state arrives,
/// and replies with the next hidden state. Its messages carry tensors, so they are local-only
/// (<see cref="INoSerializationVerificationNeeded"/>: never serialized, never sent to another node).
/// </summary>
public static class LayerProtocol
{
    public interface ICommand : INoSerializationVerificationNeeded;

    /// <summary>
    /// Runs the layer. Ownership of <paramref name="Hidden"/> passes to the layer actor, which disposes it;
    /// the reply's hidden state belongs to the receiver.
    /// </summary>
    public sealed record Compute(GpuBatchIndex Batch, TokenStep Step, IGpuBatch Work, Tensor Hidden) : ICommand
    {
        /// <summary>Whether the layer may stop at a yield point for a budget change on its way (answered with <see cref="Yielded"/>).</summary>
        public bool MayYield { get; init; } = true;
    }

    /// <param name="Work">The batch computed (a batch dropped since is no longer the block's: its result is stale).</param>
    public sealed record Computed(LayerIndex Layer, GpuBatchIndex Batch, TokenStep Step, IGpuBatch Work, Tensor Hidden) : INoSerializationVerificationNeeded;

    /// <summary>
    /// The layer stopped at a yield point for a budget change on its way, nothing of it kept: the hidden state comes back
    /// to the sender, to compute again (or to free, if the change dropped the batch).
    /// </summary>
    public sealed record Yielded(LayerIndex Layer, GpuBatchIndex Batch, TokenStep Step, IGpuBatch Work, Tensor Hidden) : INoSerializationVerificationNeeded;

    /// <param name="OutOfMemory">The device ran out of memory (a pressure event, not a failure of the block's requests).</param>
    public sealed record ComputeFailed(LayerIndex Layer, GpuBatchIndex Batch, TokenStep Step, IGpuBatch Work, string Error, bool OutOfMemory = false)
        : INoSerializationVerificationNeeded;

    /// <summary>Runs on the tensor dispatcher (one dedicated thread shared by every tensor-issuing actor).</summary>
    public static Props Props(LayerIndex layer, IInferenceEngine engine) =>
        Akka.Actor.Props.Create(() => new LayerActor(layer, engine)).WithDispatcher(ActorInferSettings.TensorDispatcher);
}
