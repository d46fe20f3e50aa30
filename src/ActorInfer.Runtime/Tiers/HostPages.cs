using System.Runtime.InteropServices;

namespace ActorInfer.Runtime.Tiers;

/// <summary>
/// Page-locking host buffers in place: large pinned buffers of the CPU tier are first touched in parallel (on huge pages
/// where the kernel gives them: far fewer faults), then registered with the driver (the tier counts what it cost:
/// <see cref="MemoryTier.HostBuffers"/>).
/// </summary>
public static partial class HostPages
{
    private const int MadvHugePage = 14;
    private static int _adviceRefused;

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static partial int MAdvise(nint address, nuint length, int advice);

    /// <summary>Asks the kernel for huge pages over the range (whole pages, not yet touched); nothing where it refuses.</summary>
    public static void AdviseHuge(nint start, long bytes)
    {
        if (!OperatingSystem.IsLinux() || Volatile.Read(ref _adviceRefused) != 0) return;
        try
        {
            if (MAdvise(start, (nuint)bytes, MadvHugePage) != 0) Volatile.Write(ref _adviceRefused, 1);
        }
        catch (Exception ex) when (ex is EntryPointNotFoundException or DllNotFoundException)
        {
            Volatile.Write(ref _adviceRefused, 1);
        }
    }
}
