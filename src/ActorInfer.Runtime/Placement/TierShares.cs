using ActorInfer.Planning;
using ActorInfer.Runtime.Tiers;
using PlannedTier = ActorInfer.Planning.Tier;

namespace ActorInfer.Runtime.Placement;

/// <summary>
/// The rule for splitting the cache's and the activations' whole items over tiers by fractions: an item goes to the
/// tier whose interval [0, gpu) [gpu, gpu + cpu) [gpu + cpu, 1] holds the midpoint of its cumulative size range.
/// Weights follow FlexGen's own order of the intervals, disk first, by groups (<see cref="WeightPlacement"/>).
/// </summary>
public static class TierShares
{
    /// <summary>The runtime's tier for the planner's.</summary>
    public static TierKind KindOf(PlannedTier tier) => tier switch
    {
        PlannedTier.Gpu => TierKind.Device,
        PlannedTier.Cpu => TierKind.Cpu,
        _ => TierKind.Disk,
    };

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

    /// <summary>Equal-sized items (the (layer, batch) pairs of cache or activations).</summary>
    public static IReadOnlyList<TierKind> AssignEqual(int count, TierFractions fractions) =>
        Assign(Enumerable.Repeat(1L, count).ToArray(), fractions);

    public static TierKind TierAt(double point, TierFractions f)
    {
        if (point < f.Gpu) return TierKind.Device;
        if (point < f.Gpu + f.Cpu) return TierKind.Cpu;
        if (f.Disk > 0) return TierKind.Disk;
        // Rounding at the top end: the last tier with a share.
        return f.Cpu > 0 ? TierKind.Cpu : TierKind.Device;
    }
}
