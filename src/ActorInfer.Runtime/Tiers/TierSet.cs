namespace ActorInfer.Runtime.Tiers;

/// <summary>
/// The three tiers a runtime allocates from. The disk tier is absent when no folder was configured. Disposing it frees
/// what its memory tiers keep for reuse (see <see cref="MemoryTier"/>).
/// </summary>
public sealed class TierSet : IDisposable
{
    public TierSet(MemoryTier device, MemoryTier cpu, DiskTier? disk)
    {
        if (device.Kind != TierKind.Device) throw new ArgumentException("the device tier must have kind Device");
        if (cpu.Kind != TierKind.Cpu) throw new ArgumentException("the CPU tier must have kind Cpu");
        Device = device;
        Cpu = cpu;
        Disk = disk;
    }

    public MemoryTier Device { get; }
    public MemoryTier Cpu { get; }
    public DiskTier? Disk { get; }

    public void Dispose()
    {
        Cpu.Dispose();
        Device.Dispose();
    }

    /// <summary>Device and CPU tiers with these budgets, and a disk tier in <paramref name="diskFolder"/> when given.</summary>
    public static TierSet Create(long deviceBytes, long cpuBytes, string? diskFolder, long diskBytes) =>
        new(MemoryTier.ForDevice(deviceBytes), MemoryTier.ForCpu(cpuBytes), diskFolder is null ? null : new DiskTier(diskFolder, diskBytes));

    public MemoryTier Memory(TierKind kind) => kind switch
    {
        TierKind.Device => Device,
        TierKind.Cpu => Cpu,
        _ => throw new ArgumentException($"{kind} is not a memory tier"),
    };

    public DiskTier RequireDisk() =>
        Disk ?? throw new InvalidOperationException("the placement uses the disk tier but no disk folder was configured");

    public Tier Get(TierKind kind) => kind == TierKind.Disk ? RequireDisk() : Memory(kind);

    public long BudgetOf(TierKind kind) => kind == TierKind.Disk ? Disk?.BudgetBytes ?? 0 : Memory(kind).BudgetBytes;

    public IEnumerable<Tier> All()
    {
        yield return Device;
        yield return Cpu;
        if (Disk is not null) yield return Disk;
    }
}
