using ActorInfer.Planning;
using ActorInfer.Runtime.Tiers;

namespace ActorInfer.Runtime.Placement;

/// <summary>
/// FlexGen's rule for splitting whole items over tiers by fractions: an item goes to the tier whose interval
/// [0, gpu) [gpu, gpu + cpu) [gpu + cpu, 1] holds the midpoint of its cumulative size range.
/// </summary>
public static class TierShares
{
    public static IReadOnlyList<TierKind> Assign(IReadOnlyList<long> sizes, TierFractions fractions)
    {
        var total = (double)sizes.Sum();
        var result = new TierKind[sizes.Count];
        double cumulative = 0;
        for (var i = 0; i < sizes.Count; i++)
        {
            cumulative += sizes[i];
            var midpoint = total == 0 ? (i + 0.5) / sizes.Count : (cumulative - sizes[i] / 2.0) / total;
            result[i] = TierAt(midpoint, fractions);
        }
        return result;
    }

    /// <summary>Equal-sized items.</summary>
    public static IReadOnlyList<TierKind> AssignEqual(int count, TierFractions fractions) =>
        Assign(Enumerable.Repeat(1L, count).ToArray(), fractions);

    /// <summary>
    /// The (layer, GPU batch) pairs of cache or activations, indexed layer * batches + batch, split by the fractions so
    /// that every layer holds the same number of pairs on each tier (give or take one), and every batch too. Pairs are
    /// taken in passes over the layers, layer l taking batch (pass + l) mod batches in each pass, and split over the
    /// tiers in that order. A layer's step is bound by the larger of its weight copy and its compute: a tier's share
    /// piled onto the first layers (a split in layer order) leaves those layers waiting for weights and the others
    /// computing for longer, where the same share spread over every layer evens them out.
    /// </summary>
    public static IReadOnlyList<TierKind> AssignSpread(int layers, int batches, TierFractions fractions)
    {
        var inOrder = AssignEqual(layers * batches, fractions);
        var result = new TierKind[layers * batches];
        var k = 0;
        for (var pass = 0; pass < batches; pass++)
            for (var layer = 0; layer < layers; layer++)
                result[layer * batches + (pass + layer) % batches] = inOrder[k++];
        return result;
    }

    public static TierKind TierAt(double point, TierFractions f)
    {
        if (point < f.Gpu) return TierKind.Device;
        if (point < f.Gpu + f.Cpu) return TierKind.Cpu;
        if (f.Disk > 0) return TierKind.Disk;
        // Rounding at the top end: the last tier with a share.
        return f.Cpu > 0 ? TierKind.Cpu : TierKind.Device;
    }
}
