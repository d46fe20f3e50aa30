using static TorchSharp.torch;

namespace ActorInfer.Runtime.Copies;

/// <summary>
/// A copy issued between tiers that may still be in flight. Compute that reads the destination must first
/// call <see cref="ICopyEngine.BeforeCompute"/>; the source and destination stay alive until it completes.
/// </summary>
public interface ICopyTicket
{
    /// <summary>Blocks the calling (host) thread until the copy has finished.</summary>
    void Wait();
}

/// <summary>
/// Moves bytes between tiers off the compute path: on CUDA on its own non-blocking streams ordered by events,
/// on the CPU on a background worker. Compute issued after <see cref="BeforeCompute"/> sees the copied data;
/// a copy issued after <see cref="AfterCompute"/> sees what compute wrote before it.
/// </summary>
public interface ICopyEngine : IDisposable
{
    /// <summary>Copies <paramref name="source"/> into <paramref name="destination"/> (same shape and dtype, any devices).</summary>
    ICopyTicket CopyAsync(Tensor destination, Tensor source, CopyDirection direction);

    /// <summary>Makes the compute stream wait for the copy (on the CPU: waits for it).</summary>
    void BeforeCompute(ICopyTicket ticket);

    /// <summary>A marker after the compute issued so far; copies that pass it as a dependency start after that compute.</summary>
    ICopyTicket AfterCompute();

    /// <summary>Copies after <paramref name="dependency"/> (typically <see cref="AfterCompute"/>) has completed.</summary>
    ICopyTicket CopyAfter(ICopyTicket dependency, Tensor destination, Tensor source, CopyDirection direction);
}

/// <summary>Which way a copy goes; CUDA keeps one stream per direction so loads and stores overlap each other.</summary>
public enum CopyDirection
{
    /// <summary>To the compute device: cache, activations and CPU attention's output, each needed by the next compute.</summary>
    Load,
    /// <summary>From the compute device (cache and activations being stored).</summary>
    Store,
    /// <summary>
    /// Weights to the compute device, prefetched a layer ahead: on their own stream (as FlexGen's weight stream), so
    /// that a batch's small inputs do not queue behind a layer's weights.
    /// </summary>
    LoadWeights,
}
