using ActorInfer.Model.Layers;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Schedule;

/// <summary>What a (layer, batch) computes from: its transfers, hidden state on the device, working cache.</summary>
internal sealed record PositionInputs(Transfers Transfers, Tensor? Hidden, LayerKv? WorkingCache, TierKind AttentionSite, Action? ExpandCache = null,
    CacheCodes? WorkingCodes = null)
{
    /// <summary>
    /// Starts loading what <paramref name="layer"/> computes from for <paramref name="batch"/>: the hidden state (taken
    /// from the batch) and, for a decoder layer in a decoding step, the site it attends on (the CPU for a cache off the
    /// device under FlexGen's CPU delegation, else the device) with a working cache there, unless the cache's home is
    /// on that site and can be attended in place (or, compressed, attended on the CPU from its codes).
    /// </summary>
    public static PositionInputs Prepare(OffloadRuntime engine, GpuBatch batch, ScheduleLayer layer, TokenStep step)
    {
        var transfers = new Transfers(engine.Copies, engine.Tiers);
        Tensor? hidden = null;
        if (layer.Kind != ScheduleLayerKind.Input)
        {
            hidden = batch.Hidden!.Load(transfers);
            batch.Hidden = null;
        }
        if (layer.Kind != ScheduleLayerKind.Decoder || step.IsPrefill)
            return new PositionInputs(transfers, hidden, null, TierKind.Device);
        var home = batch.Cache[layer.DecoderLayer];
        var site = home.Tier != TierKind.Device && engine.Policy.CpuAttention ? TierKind.Cpu : TierKind.Device;
        if (home.Tier == site && home.Memory is { } inPlace) return new PositionInputs(transfers, hidden, inPlace, site);
        var working = home.LoadPrefix(engine.Tiers.Memory(site), step.CacheIndex(batch.Layout), transfers, batch.CacheName(layer.DecoderLayer));
        return new PositionInputs(transfers, hidden, working.Cache, site, working.Expand, working.Codes);
    }
}
