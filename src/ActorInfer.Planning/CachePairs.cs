namespace ActorInfer.Planning;

/// <summary>
/// How the runtime turns the cache fractions into places: each (decoder layer, GPU batch) pair's cache lives whole on
/// one tier, and the pairs, taken in layer order, go to the tier whose interval [0, gpu) [gpu, gpu + cpu)
/// [gpu + cpu, 1] holds their midpoint (FlexGen's rule for whole items). A 21% GPU share over 48 layers of 4 batches
/// is thus the whole cache of the first 10 layers, not a fifth of every layer's: those layers are bound by their
/// weight copies, the others compute attention on the CPU for every batch. The cost model times each layer with its
/// own fractions.
/// </summary>
public static class CachePairs
{
    /// <summary>The tier of the item whose midpoint is at <paramref name="point"/> (in [0, 1]).</summary>
    public static Tier TierAt(double point, TierFractions f)
    {
        if (point < f.Gpu) return Tier.Gpu;
        if (point < f.Gpu + f.Cpu) return Tier.Cpu;
        if (f.Disk > 0) return Tier.Disk;
        // Rounding at the top end: the last tier with a share.
        return f.Cpu > 0 ? Tier.Cpu : Tier.Gpu;
    }

    /// <summary>Each layer's share of its batches' caches on each tier.</summary>
    public static TierFractions[] PerLayer(int layers, int batches, TierFractions cache)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(layers);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batches);
        var total = (double)layers * batches;
        var result = new TierFractions[layers];
        for (var layer = 0; layer < layers; layer++)
        {
            int gpu = 0, cpu = 0, disk = 0;
            for (var batch = 0; batch < batches; batch++)
            {
                switch (TierAt((layer * batches + batch + 0.5) / total, cache))
                {
                    case Tier.Gpu: gpu++; break;
                    case Tier.Cpu: cpu++; break;
                    default: disk++; break;
                }
            }
            result[layer] = new TierFractions((double)gpu / batches, (double)cpu / batches, (double)disk / batches);
        }
        return result;
    }
}
