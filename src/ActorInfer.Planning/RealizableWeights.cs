namespace ActorInfer.Planning;

/// <summary>
/// The weight fractions the search prices for a linear program's continuous answer. Whole tensors placed by
/// <see cref="WeightPlacement"/> make the bytes per tier a step function of two edges, the one between the disk and CPU
/// intervals and the one between the CPU and GPU intervals: an edge matters only by which tensors' midpoints it
/// passes. For each edge the search takes first the two placements that bracket the answer's bytes on that tier (the
/// nearest with no more and the nearest with no less), then, ring by ring, the next ones out on either side; where the
/// answer's own fraction places one of them, that fraction is kept as it is.
/// </summary>
internal static class RealizableWeights
{
    /// <summary>The rings of placements the search tries at most: the bracket and two more steps out on either side.</summary>
    public const int MaxRings = 3;

    /// <summary>
    /// Ring by ring, the fractions to try: less on the disk first, then more on the GPU (less traffic on a tie); spread over
    /// the model (<paramref name="spread"/>), <see cref="SpreadRings"/>.
    /// </summary>
    public static IEnumerable<IReadOnlyList<TierFractions>> Near(ModelSpec model, TierFractions continuous, IReadOnlyDictionary<Placement, double> fixedShares,
        bool spread = false)
    {
        if (spread)
        {
            foreach (var ring in SpreadRings(continuous, fixedShares)) yield return ring;
            yield break;
        }
        if (fixedShares.ContainsKey(Placement.WeightsCpu))
        {
            yield return [continuous];
            yield break;
        }
        var steps = Steps(model.WeightLayout, model.NumLayers);
        var total = steps.Sum(step => step.Elements);
        double diskEdge = continuous.Disk, gpuEdge = continuous.Disk + continuous.Cpu;

        // An edge in interval k (0 .. K) lies above the first k midpoints: the disk holds those k steps, the GPU the others.
        var disk = fixedShares.ContainsKey(Placement.WeightsDisk)
            ? Fixed(Interval(steps, diskEdge))
            : Rings(steps, continuous.Disk * total, below: true);
        var gpu = fixedShares.ContainsKey(Placement.WeightsGpu)
            ? Fixed(Interval(steps, gpuEdge))
            : Rings(steps, continuous.Gpu * total, below: false);

        for (var ring = 1; ring <= MaxRings; ring++)
        {
            var candidates = new List<TierFractions>();
            foreach (var (lowerInterval, lowerRing) in disk)
            {
                foreach (var (upperInterval, upperRing) in gpu)
                {
                    if (Math.Max(lowerRing, upperRing) != ring || upperInterval < lowerInterval) continue;
                    var upper = Edge(steps, upperInterval, gpuEdge);
                    // Two edges in one interval place alike wherever they lie in it: the lower then goes no higher than the upper.
                    var lower = Math.Min(Edge(steps, lowerInterval, diskEdge), upper);
                    candidates.Add(new TierFractions(1 - upper, upper - lower, lower));
                }
            }
            if (candidates.Count > 0)
                yield return candidates;
        }
    }

    /// <summary>
    /// Spread over the model, whole tensors place the answer's own fractions to within half a tensor, but the layers then
    /// differ, and one buffer holds the layer with the most off the GPU (the CPU one with the most on disk): more than the
    /// program's average layer. Where the answer's own fractions do not fit as placed, ring by ring the next steps out:
    /// less on the GPU (to the CPU) and, where the answer puts weights on disk (the CPU is then full), more on disk (from
    /// the CPU), up to a sixth of the weights each way. A fixed share is kept.
    /// </summary>
    private static IEnumerable<IReadOnlyList<TierFractions>> SpreadRings(TierFractions continuous, IReadOnlyDictionary<Placement, double> fixedShares)
    {
        yield return [continuous];
        var gpuFree = !fixedShares.ContainsKey(Placement.WeightsGpu) && !fixedShares.ContainsKey(Placement.WeightsCpu);
        var diskFree = continuous.Disk > 0 && !fixedShares.ContainsKey(Placement.WeightsDisk) && !fixedShares.ContainsKey(Placement.WeightsCpu);
        var seen = new HashSet<TierFractions> { continuous };
        for (var ring = 1; ring < SpreadSteps.Length; ring++)
        {
            var candidates = new List<TierFractions>();
            for (var i = 0; i <= (gpuFree ? ring : 0); i++)
            {
                for (var j = 0; j <= (diskFree ? ring : 0); j++)
                {
                    if (Math.Max(i, j) != ring) continue;
                    var less = Math.Min(SpreadSteps[i], continuous.Gpu);
                    var more = Math.Min(SpreadSteps[j], continuous.Cpu + less);
                    var candidate = new TierFractions(continuous.Gpu - less, continuous.Cpu + less - more, continuous.Disk + more);
                    if (seen.Add(candidate)) candidates.Add(candidate);
                }
            }
            if (candidates.Count > 0) yield return candidates;
        }
    }

    /// <summary>The steps of <see cref="SpreadRings"/>, as shares of all the weights.</summary>
    private static readonly double[] SpreadSteps = [0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.06, 0.08, 0.12, 0.16];

    private static (int Interval, int Ring)[] Fixed(int interval) => [(interval, 1)];

    /// <summary>
    /// The intervals of an edge by ring, in ascending order: ring 1 those that put on the disk (<paramref name="below"/>)
    /// or on the GPU the elements nearest <paramref name="target"/> from below and from above; each further ring the next
    /// interval out on either side that moves at least <see cref="RingStep"/> of the weights (not just a vector).
    /// </summary>
    private static (int Interval, int Ring)[] Rings(Step[] steps, double target, bool below)
    {
        // Elements beneath each interval's edge: 0 in interval 0, all of them in interval K.
        var beneath = new double[steps.Length + 1];
        for (var k = 0; k < steps.Length; k++)
            beneath[k + 1] = beneath[k] + steps[k].Elements;
        var total = beneath[^1];
        double OnTier(int k) => below ? beneath[k] : total - beneath[k];
        // The linear program's shares are exact to about a millionth: none or all of the weights is meant as such.
        var slack = total * TierFractions.Tolerance;
        target = target < slack ? 0 : target > total - slack ? total : target;
        int? under = null, over = null;
        for (var k = 0; k <= steps.Length; k++)
        {
            var bytes = OnTier(k);
            if (bytes <= target && (under is null || bytes > OnTier(under.Value))) under = k;
            if (bytes >= target && (over is null || bytes < OnTier(over.Value))) over = k;
        }
        int[] bracket = [.. new[] { under, over }.OfType<int>()];
        int low = bracket.Min(), high = bracket.Max();
        var rings = new SortedDictionary<int, int> { [low] = 1, [high] = 1 };
        for (var ring = 2; ring <= MaxRings; ring++)
        {
            var step = RingStep * total;
            var next = low - 1;
            while (next >= 0 && Math.Abs(OnTier(next) - OnTier(low)) < step) next--;
            if (next >= 0) rings[low = next] = ring;
            next = high + 1;
            while (next <= steps.Length && Math.Abs(OnTier(next) - OnTier(high)) < step) next++;
            if (next <= steps.Length) rings[high = next] = ring;
        }
        return [.. rings.Select(pair => (pair.Key, pair.Value))];
    }

    /// <summary>The least share of the weights a ring beyond the first moves: more than the vectors of a group.</summary>
    private const double RingStep = 0.005;

    /// <summary>A distinct midpoint of some group and the elements of all the tensors whose midpoint it is, over the model.</summary>
    private readonly record struct Step(double Midpoint, double Elements);

    private static Step[] Steps(WeightLayout layout, int layers)
    {
        var groups = new List<(IReadOnlyList<long> Sizes, int Count)> { (layout.Input, 1), (layout.Output, 1) };
        groups.AddRange(layout.Layer.Select(group => (group, layers)));
        return groups
            .SelectMany(group => WeightPlacement.Midpoints(group.Sizes).Select((midpoint, i) => (midpoint, elements: (double)group.Sizes[i] * group.Count)))
            .GroupBy(point => point.midpoint)
            .Select(same => new Step(same.Key, same.Sum(point => point.elements)))
            .OrderBy(step => step.Midpoint)
            .ToArray();
    }

    /// <summary>The interval of an edge: how many midpoints lie below it (a midpoint at the edge goes above it).</summary>
    private static int Interval(Step[] steps, double edge) => steps.Count(step => step.Midpoint < edge);

    /// <summary>
    /// An edge in interval k: the point of the interval nearest the answer's own edge, kept off the midpoints around it
    /// so that rounding cannot move a tensor across.
    /// </summary>
    private static double Edge(Step[] steps, int interval, double own)
    {
        var low = interval == 0 ? 0 : steps[interval - 1].Midpoint;
        var high = interval == steps.Length ? 1 : steps[interval].Midpoint;
        if (Interval(steps, own) == interval) return own;
        var margin = Math.Min(MidpointMargin, (high - low) / 2);
        return Math.Clamp(own, interval == 0 ? 0 : low + margin, interval == steps.Length ? 1 : high - margin);
    }

    /// <summary>How far a chosen edge stays from a tensor's midpoint: a hundredth of a percent.</summary>
    private const double MidpointMargin = 1e-4;
}
