namespace ActorInfer.Planning;

/// <summary>
/// How one kind of tensor (weights, KV cache or activations) is split over GPU, CPU memory and disk.
/// Each share is in [0, 1] and the three sum to 1 (within <see cref="Tolerance"/>).
/// </summary>
public sealed record TierFractions
{
    /// <summary>Rounding slack an LP solution or a percent given on the command line may carry.</summary>
    public const double Tolerance = 1e-6;

    public double Gpu { get; }
    public double Cpu { get; }
    public double Disk { get; }

    public TierFractions(double gpu, double cpu, double disk)
    {
        Check(gpu, nameof(gpu));
        Check(cpu, nameof(cpu));
        Check(disk, nameof(disk));
        var sum = gpu + cpu + disk;
        if (Math.Abs(sum - 1) > Tolerance)
            throw new ArgumentException($"tier fractions must sum to 1, got gpu {gpu} + cpu {cpu} + disk {disk} = {sum}");
        Gpu = Clamp(gpu);
        Cpu = Clamp(cpu);
        Disk = Clamp(disk);
    }

    public static TierFractions AllGpu { get; } = new(1, 0, 0);
    public static TierFractions AllCpu { get; } = new(0, 1, 0);
    public static TierFractions AllDisk { get; } = new(0, 0, 1);

    /// <summary>From GPU and CPU percentages (FlexGen's `--percent` convention); disk gets the rest.</summary>
    public static TierFractions FromPercent(double gpuPercent, double cpuPercent)
    {
        var disk = 100 - gpuPercent - cpuPercent;
        if (disk < -Tolerance * 100)
            throw new ArgumentException($"GPU {gpuPercent}% and CPU {cpuPercent}% exceed 100%");
        return new TierFractions(gpuPercent / 100, cpuPercent / 100, Math.Max(0, disk) / 100);
    }

    /// <summary>Not on the GPU: the share that has to be brought to the GPU before use.</summary>
    public double OffGpu => Cpu + Disk;

    public override string ToString() => $"gpu {Gpu:P0} / cpu {Cpu:P0} / disk {Disk:P0}";

    private static void Check(double value, string name)
    {
        if (double.IsNaN(value) || value < -Tolerance || value > 1 + Tolerance)
            throw new ArgumentException($"tier fraction '{name}' must be in [0, 1], got {value}");
    }

    private static double Clamp(double value) => Math.Clamp(value, 0, 1);
}
