using ActorInfer.Planning;
using ActorInfer.Runtime.Tiers;
using PlannedTier = ActorInfer.Planning.Tier;

namespace ActorInfer.Runtime.Placement;

/// <summary>
/// The rule for splitting the cache's and the activations' whole items over tiers by fractions: an item goes to the
/// tier whose interval [0, gpu) [gpu, gpu + cpu) [gpu + cpu, 1] holds the midpoint of its cumulative size range (the
/// midpoints as <see cref="WeightPlacement.Midpoints"/> takes them, the tiers as <see cref="CachePairs.TierAt"/> orders them).
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

    public static IReadOnlyList<TierKind> Assign(IReadOnlyList<long> sizes, TierFractions fractions) =>
        [.. WeightPlacement.Midpoints(sizes).Select(midpoint => KindOf(CachePairs.TierAt(midpoint, fractions)))];

    /// <summary>Equal-sized items (the (layer, batch) pairs of cache or activations).</summary>
    public static IReadOnlyList<TierKind> AssignEqual(int count, TierFractions fractions) =>
        Assign(Enumerable.Repeat(1L, count).ToArray(), fractions);
}
