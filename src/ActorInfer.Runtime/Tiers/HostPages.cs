using System.Diagnostics;
using System.Runtime.InteropServices;

namespace ActorInfer.Runtime.Tiers;

/// <summary>
/// Page-locking host buffers in place, and what it cost: large pinned buffers of the CPU tier are first touched in
/// parallel (on huge pages where the kernel gives them: far fewer faults), then registered with the driver. A block that
/// places a new cache on the CPU pays this once per buffer; the process-wide totals let a block report its share.
/// </summary>
public static partial class HostPages
{
    private const int MadvHugePage = 14;
    private static int _adviceRefused;
    private static long _bytes;
    private static long _touchTicks;
    private static long _registerTicks;

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

    /// <summary>A buffer of <paramref name="bytes"/> was touched and registered, taking these stopwatch ticks.</summary>
    internal static void Count(long bytes, long touchTicks, long registerTicks)
    {
        Interlocked.Add(ref _bytes, bytes);
        Interlocked.Add(ref _touchTicks, touchTicks);
        Interlocked.Add(ref _registerTicks, registerTicks);
    }

    /// <summary>Host bytes page-locked in place so far in this process, and the time spent touching and registering them.</summary>
    public static (long Bytes, TimeSpan Touching, TimeSpan Registering) Totals =>
        (Interlocked.Read(ref _bytes), Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _touchTicks)),
            Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _registerTicks)));
}
