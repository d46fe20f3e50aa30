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

    /// <summary>The bytes per tier that <paramref name="fractions"/> place, of the whole model and of one decoder layer.</summary>
    public static RealizedWeights Realize(WeightLayout layout, int layers, int bytesPerElement, TierFractions fractions)
    {
        ArgumentNullException.ThrowIfNull(layout);
        var layer = layout.Layer.Select(group => Elements(group, fractions)).Aggregate((a, b) => a + b);
        var model = Elements(layout.Input, fractions) + layers * layer + Elements(layout.Output, fractions);
        return new RealizedWeights(bytesPerElement * model, bytesPerElement * layer);
    }
}

/// <summary>Weight bytes per tier as a policy's fractions place them: the whole model's and one decoder layer's.</summary>
public sealed record RealizedWeights(TierBytes Model, TierBytes Layer)
{
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
