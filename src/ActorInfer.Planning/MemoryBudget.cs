namespace ActorInfer.Planning;

/// <summary>
/// The memory a policy may use per tier: capacity times a headroom factor. A factor below 1 keeps a reserve
/// (allocator fragmentation, the CUDA context); above 1 relaxes the model's peak estimate, as FlexGen's alpha does.
/// </summary>
public sealed record MemoryBudget
{
    public long GpuBytes { get; }
    public long CpuBytes { get; }
    public long DiskBytes { get; }
    public double GpuHeadroom { get; init; } = 1;
    public double CpuHeadroom { get; init; } = 1;
    public double DiskHeadroom { get; init; } = 1;

    /// <summary>
    /// The caching allocator's reserve beyond the GPU's buffers, as a share of them: the GPU's bytes are counted as
    /// <see cref="DevicePeak"/> counts them (homes once, buffers with this share on top), so that a budget bounds what the
    /// device will report. <see cref="DevicePeak.AllocatorReserveShare"/> for a budget on a CUDA device; 0 (the tensors
    /// alone, as FlexGen counts them) by default.
    /// </summary>
    public double GpuBufferReserve
    {
        get => _gpuBufferReserve;
        init
        {
            if (double.IsNaN(value) || value < 0 || double.IsInfinity(value))
                throw new ArgumentException($"the GPU buffers' reserve must be a non-negative share, got {value}");
            _gpuBufferReserve = value;
        }
    }

    private readonly double _gpuBufferReserve;

    public MemoryBudget(long gpuBytes, long cpuBytes, long diskBytes)
    {
        NonNegative(gpuBytes, "GPU memory");
        NonNegative(cpuBytes, "CPU memory");
        NonNegative(diskBytes, "disk");
        GpuBytes = gpuBytes;
        CpuBytes = cpuBytes;
        DiskBytes = diskBytes;
    }

    public static MemoryBudget Of(HardwareProfile profile) => new(profile.GpuMemoryBytes, profile.CpuMemoryBytes, profile.DiskBytes);

    public long Capacity(Tier tier) => tier switch
    {
        Tier.Gpu => GpuBytes,
        Tier.Cpu => CpuBytes,
        _ => DiskBytes,
    };

    public double Headroom(Tier tier) => tier switch
    {
        Tier.Gpu => GpuHeadroom,
        Tier.Cpu => CpuHeadroom,
        _ => DiskHeadroom,
    };

    /// <summary>Bytes a policy may use on this tier.</summary>
    public double Usable(Tier tier)
    {
        var headroom = Headroom(tier);
        if (double.IsNaN(headroom) || headroom <= 0 || double.IsInfinity(headroom))
            throw new ArgumentException($"{tier} headroom factor must be a positive number, got {headroom}");
        return Capacity(tier) * headroom;
    }

    public bool Fits(TierBytes peak, double relativeTolerance = 1e-9) =>
        Enum.GetValues<Tier>().All(tier => peak.For(tier) <= Usable(tier) * (1 + relativeTolerance) + 1);

    private static void NonNegative(long value, string what)
    {
        if (value < 0)
            throw new ArgumentException($"{what} must not be negative, got {value} bytes");
    }
}
