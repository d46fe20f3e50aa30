using ActorInfer.Runtime.Cuda;

namespace ActorInfer.Runtime.Tiers;

/// <summary>What the machine reports about its memories: the device's free/total bytes and the host's available bytes.</summary>
public static class MachineMemory
{
    public static bool HasCuda => TorchSharp.torch.cuda.is_available();

    /// <summary>Free and total device memory as the CUDA driver reports them (the caching allocator's reserve counts as used).</summary>
    public static (long Free, long Total) Device() =>
        HasCuda ? CudaRuntime.MemoryInfo() : throw new InvalidOperationException("no CUDA device on this machine");

    /// <summary>MemAvailable from /proc/meminfo, in bytes.</summary>
    public static long HostAvailable()
    {
        foreach (var line in File.ReadLines("/proc/meminfo"))
        {
            if (!line.StartsWith("MemAvailable:", StringComparison.Ordinal)) continue;
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return long.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        }
        throw new InvalidDataException("/proc/meminfo has no MemAvailable line");
    }

    /// <summary>Free bytes on the file system that holds <paramref name="folder"/>.</summary>
    public static long DiskFree(string folder) => new DriveInfo(Path.GetFullPath(folder)).AvailableFreeSpace;
}
