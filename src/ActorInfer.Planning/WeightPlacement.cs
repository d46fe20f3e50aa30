namespace ActorInfer.Planning;

/// <summary>
/// How a policy's weight fractions become places, FlexGen's rule (<c>init_weight_list</c>, <c>get_choice</c>): within
/// each group of a <see cref="WeightLayout"/>, a whole tensor goes to the tier whose interval holds the midpoint of the
/// tensor's cumulative size range, the intervals in the order disk [0, d), CPU [d, d + c), GPU [d + c, 1]. The runtime
/// places weights by it and the cost model prices them by it, so `--percent` means for weights what it means in
/// FlexGen: for OPT, 20% on the GPU is each attention's output projection and the vectors after it, about 8%.
/// </summary>
public static class WeightPlacement
{
    /// <summary>The tier of each tensor of one group, by its midpoint.</summary>
    public static Tier[] Assign(IReadOnlyList<long> sizes, TierFractions fractions)
    {
        ArgumentNullException.ThrowIfNull(fractions);
        var midpoints = Midpoints(sizes);
        var tiers = new Tier[midpoints.Length];
        for (var i = 0; i < tiers.Length; i++)
            tiers[i] = TierAt(midpoints[i], fractions);
        return tiers;
    }

    /// <summary>Where each tensor's cumulative size range has its middle, as a share of the group's size.</summary>
    public static double[] Midpoints(IReadOnlyList<long> sizes)
    {
        ArgumentNullException.ThrowIfNull(sizes);
        var total = (double)sizes.Sum();
        var midpoints = new double[sizes.Count];
        double cumulative = 0;
        for (var i = 0; i < sizes.Count; i++)
        {
            cumulative += sizes[i];
            midpoints[i] = total == 0 ? (i + 0.5) / sizes.Count : (cumulative - sizes[i] / 2.0) / total;
        }
        return midpoints;
    }

    /// <summary>The tier whose interval, disk first, holds <paramref name="point"/> (in [0, 1]).</summary>
    public static Tier TierAt(double point, TierFractions f)
    {
        if (point < f.Disk) return Tier.Disk;
        if (point < f.Disk + f.Cpu) return Tier.Cpu;
        if (f.Gpu > 0) return Tier.Gpu;
        // Rounding at the top end: the last tier with a share.
        return f.Cpu > 0 ? Tier.Cpu : Tier.Disk;
    }

    /// <summary>Elements per tier of one group.</summary>
    public static TierBytes Elements(IReadOnlyList<long> sizes, TierFractions fractions)
    {
        var tiers = Assign(sizes, fractions);
        double gpu = 0, cpu = 0, disk = 0;
        for (var i = 0; i < tiers.Length; i++)
        {
            switch (tiers[i])
            {
                case Tier.Gpu: gpu += sizes[i]; break;
                case Tier.Cpu: cpu += sizes[i]; break;
                default: disk += sizes[i]; break;
            }
        }
        return new TierBytes(gpu, cpu, disk);
    }

    /// <summary>
    /// The bytes per tier that <paramref name="fractions"/> place, of the whole model and of one decoder layer; spread
    /// (<see cref="AssignSpread"/>): one decoder layer's are the layers' average, and the largest off-GPU layer is kept
    /// for the buffers that hold one.
    /// </summary>
    public static RealizedWeights Realize(WeightLayout layout, int layers, int bytesPerElement, TierFractions fractions, bool spread = false)
    {
        ArgumentNullException.ThrowIfNull(layout);
        if (!spread)
        {
            var layer = layout.Layer.Select(group => Elements(group, fractions)).Aggregate((a, b) => a + b);
            var model = Elements(layout.Input, fractions) + layers * layer + Elements(layout.Output, fractions);
            return new RealizedWeights(bytesPerElement * model, bytesPerElement * layer);
        }
        var (groups, ordering) = Orderings.GetOrAdd((layout, layers), key =>
        {
            var list = SpreadGroups(key.Item1, key.Item2);
            return (list, SpreadOrdering.Of(list, key.Item2));
        });
        var tiers = ordering.Assign(fractions);
        var all = new TierBytes(0, 0, 0);
        var perLayer = new TierBytes[layers];
        for (var l = 0; l < layers; l++) perLayer[l] = new TierBytes(0, 0, 0);
        for (var g = 0; g < groups.Count; g++)
        {
            for (var i = 0; i < tiers[g].Length; i++)
            {
                var bytes = Of(tiers[g][i], bytesPerElement * (double)groups[g].Sizes[i]);
                all += bytes;
                if (groups[g].Layer >= 0) perLayer[groups[g].Layer] += bytes;
            }
        }
        var average = layers == 0 ? new TierBytes(0, 0, 0) : 1.0 / layers * perLayer.Aggregate((a, b) => a + b);
        return new RealizedWeights(all, average)
        {
            LargestOffGpuLayer = perLayer.Length == 0 ? 0 : perLayer.Max(b => b.Cpu + b.Disk),
            LargestDiskLayer = perLayer.Length == 0 ? 0 : perLayer.Max(b => b.Disk),
        };

        static TierBytes Of(Tier tier, double bytes) => tier switch
        {
            Tier.Gpu => new TierBytes(bytes, 0, 0),
            Tier.Cpu => new TierBytes(0, bytes, 0),
            _ => new TierBytes(0, 0, bytes),
        };
    }

    /// <summary>A model's groups in schedule order: the input layer's, each decoder layer's, the output layer's.</summary>
    internal static List<SpreadGroup> SpreadGroups(WeightLayout layout, int layers)
    {
        var groups = new List<SpreadGroup> { new(layout.Input, -1) };
        for (var l = 0; l < layers; l++)
            groups.AddRange(layout.Layer.Select(group => new SpreadGroup(group, l)));
        groups.Add(new SpreadGroup(layout.Output, -1));
        return groups;
    }

    /// <summary>A group of tensors placed together (sizes in placement order) and its decoder layer (-1: the input or output layer).</summary>
    public readonly record struct SpreadGroup(IReadOnlyList<long> Sizes, int Layer);

    /// <summary>
    /// Placement over the model as a whole ("spread"), so that the tiers hold the fractions of all the weights to within
    /// half a tensor, where FlexGen's rule within each group rounds every group alike (for OPT, 20% on the GPU is about
    /// 8%). Every tensor keeps its place in FlexGen's order, its midpoint within its group: the GPU takes tensors from the
    /// highest midpoint down and the disk from the lowest up, as FlexGen's rule does when its fractions grow; among the
    /// decoder layers' copies of one tensor, the layers are taken in an order that spreads any prefix of them evenly over
    /// the model (0, L/2, L/4, 3L/4, ...). A tensor goes to the GPU when the middle of its range in the GPU's order lies
    /// below the GPU's fraction of all elements (the disk likewise, from the other end); the rest to the CPU. More of a
    /// tier's fraction never takes a tensor off that tier.
    /// </summary>
    public static Tier[][] AssignSpread(IReadOnlyList<SpreadGroup> groups, int layers, TierFractions fractions)
    {
        ArgumentNullException.ThrowIfNull(groups);
        ArgumentNullException.ThrowIfNull(fractions);
        return SpreadOrdering.Of(groups, layers).Assign(fractions);
    }

    /// <summary>The orders of <see cref="AssignSpread"/>, which do not depend on the fractions: made once per model for the search.</summary>
    public sealed class SpreadOrdering
    {
        private readonly (int Group, int Index, long Size)[] _down;
        private readonly (int Group, int Index, long Size)[] _up;
        private readonly int[] _groupSizes;
        private readonly double _total;

        /// <summary>The orders of these groups (a decoder layer's by its index).</summary>
        public static SpreadOrdering Of(IReadOnlyList<SpreadGroup> groups, int layers)
        {
            ArgumentNullException.ThrowIfNull(groups);
            return new SpreadOrdering(groups, layers);
        }

        private SpreadOrdering(IReadOnlyList<SpreadGroup> groups, int layers)
        {
            var rank = SpreadOrder(layers);
            var items = new List<(int Group, int Index, double Midpoint, int Rank, long Size)>();
            for (var g = 0; g < groups.Count; g++)
            {
                var midpoints = Midpoints(groups[g].Sizes);
                for (var i = 0; i < midpoints.Length; i++)
                    items.Add((g, i, midpoints[i], groups[g].Layer >= 0 ? rank[groups[g].Layer] : -1, groups[g].Sizes[i]));
            }
            _total = items.Sum(t => (double)t.Size);
            _down = [.. items.OrderByDescending(t => t.Midpoint).ThenBy(t => t.Rank).ThenBy(t => t.Group).ThenBy(t => t.Index).Select(t => (t.Group, t.Index, t.Size))];
            _up = [.. items.OrderBy(t => t.Midpoint).ThenBy(t => t.Rank).ThenBy(t => t.Group).ThenBy(t => t.Index).Select(t => (t.Group, t.Index, t.Size))];
            _groupSizes = [.. groups.Select(g => g.Sizes.Count)];
        }

        /// <summary>Each tensor's tier, by group, for these fractions.</summary>
        public Tier[][] Assign(TierFractions fractions)
        {
            ArgumentNullException.ThrowIfNull(fractions);
            const Tier unset = (Tier)(-1);
            var tiers = _groupSizes.Select(n => Enumerable.Repeat(unset, n).ToArray()).ToArray();
            Take(_down, fractions.Gpu, Tier.Gpu);
            Take(_up, fractions.Disk, Tier.Disk);
            var rest = fractions.Cpu > 0 || (fractions.Gpu == 0 && fractions.Disk == 0) ? Tier.Cpu
                : fractions.Gpu >= fractions.Disk ? Tier.Gpu : Tier.Disk;
            foreach (var group in tiers)
                for (var i = 0; i < group.Length; i++)
                    if (group[i] == unset) group[i] = rest;
            return tiers;

            // A prefix of the order, each tensor while the middle of its range lies below the share; the GPU's first.
            void Take((int Group, int Index, long Size)[] order, double share, Tier tier)
            {
                if (share <= 0 || _total == 0) return;
                double before = 0;
                foreach (var (g, i, size) in order)
                {
                    if ((before + size / 2.0) / _total >= share) break;
                    if (tiers[g][i] == unset) tiers[g][i] = tier;
                    before += size;
                }
            }
        }
    }

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(WeightLayout, int), (List<SpreadGroup> Groups, SpreadOrdering Ordering)> Orderings = new();

    /// <summary>
    /// Each layer's rank in an order whose every prefix spreads evenly over <paramref name="layers"/> layers: the layers
    /// that the base-2 van der Corput sequence (0, 1/2, 1/4, 3/4, ...) scaled to the count reaches first.
    /// </summary>
    internal static int[] SpreadOrder(int layers)
    {
        var rank = Enumerable.Repeat(-1, layers).ToArray();
        var next = 0;
        for (long k = 0; next < layers && k < 64L * layers + 64; k++)
        {
            double x = 0, f = 0.5;
            for (var n = k; n > 0; n >>= 1, f /= 2)
                if ((n & 1) != 0) x += f;
            var layer = (int)Math.Floor(x * layers);
            if (rank[layer] < 0) rank[layer] = next++;
        }
        for (var l = 0; l < layers; l++)
            if (rank[l] < 0) rank[l] = next++;
        return rank;
    }
}

/// <summary>Weight bytes per tier as a policy's fractions place them: the whole model's and one decoder layer's.</summary>
public sealed record RealizedWeights(TierBytes Model, TierBytes Layer)
{
    /// <summary>The off-GPU bytes of the decoder layer with the most (what a buffer for one layer's loaded weights holds).</summary>
    public double LargestOffGpuLayer { get; init; } = Layer.Cpu + Layer.Disk;

    /// <summary>The disk bytes of the decoder layer with the most.</summary>
    public double LargestDiskLayer { get; init; } = Layer.Disk;

    /// <summary>The whole model's split as shares of the bytes placed.</summary>
    public TierFractions Fractions
    {
        get
        {
            var total = Model.Gpu + Model.Cpu + Model.Disk;
            return new TierFractions(Model.Gpu / total, Model.Cpu / total, Model.Disk / total);
        }
    }
}
