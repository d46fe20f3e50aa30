namespace ActorInfer.Planning;

/// <summary>
/// FlexGen's fitted correction of the CPU attention rate for small GPU batches and narrow models: the rate is
/// multiplied by max(0.1, 1 + BatchAndHidden·b·w − Batch·b − Hidden·w), with b = max(0, log2(64 / gpu batch))
/// and w = max(0, log2(4096 / hidden size)).
/// </summary>
public sealed record CpuAttentionFit(double BatchAndHidden, double Batch, double Hidden)
{
    public double Factor(int gpuBatchSize, int hiddenSize)
    {
        var batchOctaves = Math.Max(0, Math.Log2(64.0 / gpuBatchSize));
        var hiddenOctaves = Math.Max(0, Math.Log2(4096.0 / hiddenSize));
        return Math.Max(0.1, 1 + BatchAndHidden * batchOctaves * hiddenOctaves - Batch * batchOctaves - Hidden * hiddenOctaves);
    }

    /// <summary>
    /// The rate at GPU batch 64 and the batch coefficient that fit measured (GPU batch size, FLOP/s) points, all taken
    /// at one hidden size, in least squares: the rate is linear in b = log2(64 / batch), so the intercept is the rate
    /// at 64 and the slope over it the coefficient. The hidden terms stay 0: one hidden size cannot fix them, and at
    /// 4096 or more FlexGen's correction has none. A rate that does not fall with smaller batches gets no correction
    /// (coefficient 0, the mean rate).
    /// </summary>
    public static (double RateAt64, CpuAttentionFit Fit) FromRates(IReadOnlyCollection<(int GpuBatchSize, double FlopsPerSecond)> points)
    {
        if (points.Count == 0 || points.Any(p => p.GpuBatchSize <= 0 || !(p.FlopsPerSecond > 0) || double.IsInfinity(p.FlopsPerSecond)))
            throw new ArgumentException("CPU attention fit: needs at least one point, each with a positive batch size and rate");
        var octaves = points.Select(p => Math.Max(0, Math.Log2(64.0 / p.GpuBatchSize))).ToArray();
        var rates = points.Select(p => p.FlopsPerSecond).ToArray();
        double meanOctaves = octaves.Average(), meanRate = rates.Average();
        double covariance = 0, variance = 0;
        for (var i = 0; i < octaves.Length; i++)
        {
            covariance += (octaves[i] - meanOctaves) * (rates[i] - meanRate);
            variance += (octaves[i] - meanOctaves) * (octaves[i] - meanOctaves);
        }
        var slope = variance > 0 ? covariance / variance : 0;
        var intercept = meanRate - slope * meanOctaves;
        if (slope >= 0)
            return (meanRate, new CpuAttentionFit(0, 0, 0));
        return (intercept, new CpuAttentionFit(0, -slope / intercept, 0));
    }
}

/// <summary>
/// One machine as the cost model sees it: tier capacities (bytes) and measured rates (bytes/s, FLOP/s).
/// Bulk rates serve weights and activations; the cache rates serve KV cache traffic, whose access pattern
/// (many strided, smaller copies) is slower on some links.
/// </summary>
public sealed record HardwareProfile
{
    public required string Name { get; init; }
    public required long GpuMemoryBytes { get; init; }
    public required long CpuMemoryBytes { get; init; }
    public required long DiskBytes { get; init; }

    public required double CpuToGpuBytesPerSecond { get; init; }
    public required double CpuToGpuCacheBytesPerSecond { get; init; }
    public required double GpuToCpuBytesPerSecond { get; init; }
    public required double GpuToCpuCacheBytesPerSecond { get; init; }
    public required double DiskToCpuBytesPerSecond { get; init; }
    public required double DiskToCpuCacheBytesPerSecond { get; init; }
    public required double CpuToDiskBytesPerSecond { get; init; }
    public required double CpuToDiskCacheBytesPerSecond { get; init; }

    /// <summary>Dense matrix products of a layer during prefill (large M = batch x prompt).</summary>
    public required double GpuMatmulPrefillFlops { get; init; }
    /// <summary>Dense matrix products during decoding (M = batch: memory-bound, far below peak).</summary>
    public required double GpuMatmulDecodeFlops { get; init; }
    /// <summary>Batched matrix products of attention (scores and weighted values) during prefill.</summary>
    public required double GpuBatchedMatmulPrefillFlops { get; init; }
    /// <summary>
    /// Batched matrix products of attention during decoding (one query row per head): FlexGen's rate, measured and kept in
    /// profiles, but no longer what the cost model prices decoding attention on the GPU by (a read of the cache at
    /// <see cref="GpuMemoryBytesPerSecond"/>, the fused decoding kernel's bound).
    /// </summary>
    public required double GpuBatchedMatmulDecodeFlops { get; init; }
    /// <summary>Attention over a CPU-resident cache, computed on the CPU during decoding.</summary>
    public required double CpuAttentionFlops { get; init; }
    /// <summary>
    /// GPU memory (HBM/GDDR) bandwidth: each GPU batch reads the layer's weights once, which bounds decoding's
    /// small matrix products from below however fast the arithmetic is (a roofline term; not in FlexGen's model).
    /// </summary>
    public required double GpuMemoryBytesPerSecond { get; init; }
    public CpuAttentionFit? CpuAttentionFit { get; init; }
    /// <summary>
    /// Fixed time each (layer, GPU batch) position costs beyond its arithmetic and memory traffic: kernel launches and
    /// the host's scheduling of the position (not in FlexGen's model; zero leaves it out). It keeps the search from
    /// preferring many tiny GPU batches that the arithmetic alone prices as nearly free.
    /// </summary>
    public double GpuBatchOverheadSeconds { get; init; }

    /// <summary>
    /// The tokens per product <see cref="GpuMatmulDecodeFlops"/> was measured at (zero: not given). Decoding's products
    /// are bound by reading the weights up to a few hundred tokens, so their time hardly grows with the batch: given this,
    /// a GPU batch's products take at least the measured time (scaled to the layer), and longer only where the arithmetic
    /// at the prefill rate takes longer. Without it the time grows with the batch at the measured rate (FlexGen's model),
    /// which prices a batch of 96 at three times a batch of 32.
    /// </summary>
    public double GpuMatmulDecodeTokens { get; init; }

    /// <summary>
    /// Attention on the CPU over a 4-bit compressed cache, as the runtime runs it there (from the codes, or expanded first where
    /// the CPU or the heads do not allow that), in FLOP/s of the attention it computes at GPU batch 64 (zero: not given; the
    /// uncompressed rate is used). The batch correction is <see cref="CpuAttentionFit"/>'s.
    /// </summary>
    public double CpuAttentionCodesFlops { get; init; }

    /// <summary>Where the numbers come from (a paper, a measuring run); informational.</summary>
    public string? Source { get; init; }

    /// <summary>Throws an <see cref="ArgumentException"/> naming the profile key of the first bad value.</summary>
    public HardwareProfile Validate()
    {
        if (string.IsNullOrWhiteSpace(Name))
            throw new ArgumentException($"hardware profile: '{HardwareProfileKeys.Name}' must not be empty");
        foreach (var (key, value) in OptionalValues())
        {
            if (double.IsNaN(value) || double.IsInfinity(value) || value < 0)
                throw new ArgumentException($"hardware profile '{Name}': '{key}' must be zero or positive, got {value}");
        }
        foreach (var (key, value) in Values())
        {
            if (double.IsNaN(value) || double.IsInfinity(value) || value <= 0)
                throw new ArgumentException($"hardware profile '{Name}': '{key}' must be a positive number, got {value}");
        }
        return this;
    }

    /// <summary>The optional values (zero: not given, left out of the file).</summary>
    internal IEnumerable<(string Key, double Value)> OptionalValues()
    {
        yield return (HardwareProfileKeys.GpuBatchOverhead, GpuBatchOverheadSeconds);
        yield return (HardwareProfileKeys.GpuMatmulDecodeTokens, GpuMatmulDecodeTokens);
        yield return (HardwareProfileKeys.CpuAttentionCodes, CpuAttentionCodesFlops);
    }

    internal IEnumerable<(string Key, double Value)> Values()
    {
        yield return (HardwareProfileKeys.GpuMemory, GpuMemoryBytes);
        yield return (HardwareProfileKeys.CpuMemory, CpuMemoryBytes);
        yield return (HardwareProfileKeys.Disk, DiskBytes);
        yield return (HardwareProfileKeys.CpuToGpu, CpuToGpuBytesPerSecond);
        yield return (HardwareProfileKeys.CpuToGpuCache, CpuToGpuCacheBytesPerSecond);
        yield return (HardwareProfileKeys.GpuToCpu, GpuToCpuBytesPerSecond);
        yield return (HardwareProfileKeys.GpuToCpuCache, GpuToCpuCacheBytesPerSecond);
        yield return (HardwareProfileKeys.DiskToCpu, DiskToCpuBytesPerSecond);
        yield return (HardwareProfileKeys.DiskToCpuCache, DiskToCpuCacheBytesPerSecond);
        yield return (HardwareProfileKeys.CpuToDisk, CpuToDiskBytesPerSecond);
        yield return (HardwareProfileKeys.CpuToDiskCache, CpuToDiskCacheBytesPerSecond);
        yield return (HardwareProfileKeys.GpuMatmulPrefill, GpuMatmulPrefillFlops);
        yield return (HardwareProfileKeys.GpuMatmulDecode, GpuMatmulDecodeFlops);
        yield return (HardwareProfileKeys.GpuBatchedMatmulPrefill, GpuBatchedMatmulPrefillFlops);
        yield return (HardwareProfileKeys.GpuBatchedMatmulDecode, GpuBatchedMatmulDecodeFlops);
        yield return (HardwareProfileKeys.CpuAttention, CpuAttentionFlops);
        yield return (HardwareProfileKeys.GpuMemoryBandwidth, GpuMemoryBytesPerSecond);
    }

    /// <summary>
    /// The CPU attention rate for this GPU batch size and model width, over a compressed cache where
    /// <paramref name="compressedCache"/> (and the profile has that rate), after the fitted correction if any.
    /// </summary>
    public double EffectiveCpuAttentionFlops(int gpuBatchSize, int hiddenSize, bool compressedCache = false) =>
        (compressedCache && CpuAttentionCodesFlops > 0 ? CpuAttentionCodesFlops : CpuAttentionFlops)
        * (CpuAttentionFit?.Factor(gpuBatchSize, hiddenSize) ?? 1.0);
}

/// <summary>The built-in profiles.</summary>
public static class HardwareProfiles
{
    /// <summary>FlexGen's binary gigabyte, in which its cost model states bandwidths (flexgen/utils.py: GB = 1 &lt;&lt; 30).</summary>
    private const double FlexGenGigabyte = 1L << 30;
    /// <summary>FlexGen's tera (flexgen/utils.py: T = 1e12).</summary>
    private const double Tera = 1e12;

    /// <summary>
    /// A Google Cloud T4 machine as FlexGen's experimental cost model fits it (experimental/cost_model.py,
    /// CostModelConfig): NVIDIA T4 16 GB, 208 GB DRAM, 1.5 TB SSD.
    /// </summary>
    public static HardwareProfile T4FlexGen { get; } = new HardwareProfile
    {
        Name = "t4-flexgen",
        GpuMemoryBytes = 16_000_000_000,
        CpuMemoryBytes = 208_000_000_000,
        DiskBytes = 1_500_000_000_000,
        CpuToGpuBytesPerSecond = 12.89 * FlexGenGigabyte,
        CpuToGpuCacheBytesPerSecond = 12.89 * FlexGenGigabyte,
        GpuToCpuBytesPerSecond = 4.82 * FlexGenGigabyte,
        GpuToCpuCacheBytesPerSecond = 0.97 * FlexGenGigabyte,
        DiskToCpuBytesPerSecond = 0.473 * FlexGenGigabyte,
        DiskToCpuCacheBytesPerSecond = 0.473 * FlexGenGigabyte,
        CpuToDiskBytesPerSecond = 2.015 * FlexGenGigabyte,
        CpuToDiskCacheBytesPerSecond = 0.746 * FlexGenGigabyte,
        GpuMatmulPrefillFlops = 21.24 * Tera,
        GpuMatmulDecodeFlops = 4.3 * Tera,
        GpuBatchedMatmulPrefillFlops = 9.97 * Tera,
        GpuBatchedMatmulDecodeFlops = 0.079 * Tera,
        CpuAttentionFlops = 0.0123 * Tera,
        CpuAttentionFit = new CpuAttentionFit(BatchAndHidden: 0.0168, Batch: 0.0328, Hidden: 0.0621),
        GpuMemoryBytesPerSecond = 320e9,
        Source = "FlexGen experimental/cost_model.py CostModelConfig (fitted on a GCP T4; GB = 2^30 bytes, T = 1e12); " +
                 "GPU memory bandwidth 320 GB/s from NVIDIA's T4 datasheet",
    };

    public static IReadOnlyList<HardwareProfile> All { get; } = [T4FlexGen];

    /// <summary>A built-in profile by name, or a JSON profile file by path.</summary>
    public static HardwareProfile Resolve(string nameOrPath)
    {
        var builtIn = All.FirstOrDefault(p => string.Equals(p.Name, nameOrPath, StringComparison.OrdinalIgnoreCase));
        if (builtIn is not null)
            return builtIn;
        if (File.Exists(nameOrPath))
            return HardwareProfileJson.Load(nameOrPath);
        throw new ArgumentException(
            $"unknown hardware profile '{nameOrPath}': neither a built-in ({string.Join(", ", All.Select(p => p.Name))}) nor an existing file");
    }
}
