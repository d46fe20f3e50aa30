namespace ActorInfer.Actors.Memory;

/// <summary>
/// Telemetry of this machine: the host's MemAvailable from /proc/meminfo, free space on the data folder's
/// disk, and free device memory from a device probe (the runtime supplies one for CUDA; none on a CPU node).
/// </summary>
/// <param name="ownHostBytes">Host memory the node's own tiers hold: not pressure, so it counts as available.</param>
public sealed class HostMemoryProbe(string dataDir, Func<long?>? deviceFreeBytes = null, string meminfoPath = "/proc/meminfo",
    Func<long>? ownHostBytes = null) : IMemoryProbe
{
    public long? Available(Tier tier) => tier switch
    {
        Tier.Gpu => deviceFreeBytes?.Invoke(),
        Tier.Cpu => MemAvailable(meminfoPath) is { } available ? available + (ownHostBytes?.Invoke() ?? 0) : null,
        _ => DiskFree(dataDir),
    };

    /// <summary>MemAvailable in bytes, or null when the file is missing or has no such line.</summary>
    public static long? MemAvailable(string path)
    {
        if (!File.Exists(path)) return null;
        foreach (var line in File.ReadLines(path))
        {
            if (!line.StartsWith("MemAvailable:", StringComparison.Ordinal)) continue;
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length >= 2 && long.TryParse(parts[1], out var kib))
                return parts.Length >= 3 && parts[2] == "kB" ? kib * 1024 : kib;
        }
        return null;
    }

    private static long? DiskFree(string dir)
    {
        try
        {
            Directory.CreateDirectory(dir);
            return new DriveInfo(Path.GetFullPath(dir)).AvailableFreeSpace;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return null;
        }
    }
}
