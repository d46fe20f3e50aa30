using ActorInfer.Model.Layers;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Schedule;

/// <summary>Where the KV cache of one (decoder layer, GPU batch) lives between steps: <see cref="KvHome"/> or <see cref="CompressedKvHome"/>.</summary>
internal interface IKvHome : IDisposable
{
    TierKind Tier { get; }

    /// <summary>The cache itself where attention can read and write it in place (null when it must be loaded or expanded).</summary>
    LayerKv? Memory { get; }

    /// <summary>
    /// A working cache on <paramref name="site"/> with room for <paramref name="length"/> + 1 entries, its first
    /// <paramref name="length"/> filled from home: the copies are added to <paramref name="transfers"/>; what must run
    /// after them on the compute device is <see cref="WorkingKv.Expand"/>. A compressed home attended on the CPU gives its
    /// first <paramref name="length"/> positions' codes there instead (<see cref="WorkingKv.Codes"/>).
    /// </summary>
    WorkingKv LoadPrefix(MemoryTier site, int length, Transfers transfers, string what);

    /// <summary>Stores [B, heads, T, head_dim] keys and values at cache index <paramref name="start"/> after the compute issued so far.</summary>
    void Store(int start, Tensor keys, Tensor values, ICopyEngine engine, TierSet tiers, Transfers pending, string what);
}

/// <summary>
/// A loaded working cache and the compute (if any) that completes it once its copies have arrived; or, for a compressed cache
/// attended on the CPU from its codes, those codes (and no working cache).
/// </summary>
internal sealed record WorkingKv(LayerKv? Cache, Action? Expand, CacheCodes? Codes = null);
