using System.Runtime.InteropServices;

namespace ActorInfer.Actors.Scheduling;

/// <summary>
/// The host side of a model below the node's top priority, taken by its tensor thread before its first work:
/// <list type="bullet">
/// <item>a higher nice value (<paramref name="nice"/>; 0: unchanged), which the worker threads that thread starts for
/// attention on the CPU (libtorch's OpenMP team of that thread) inherit: where every core is busy, the threads of the
/// models above it (which issue their kernels) run first; where cores are idle it changes nothing (Linux only);</item>
/// <item>a cap on the intra-op threads of that thread's CPU work (<paramref name="threads"/>; 0: unchanged): a parallel
/// region waits for its slowest thread, so a team as large as the host, one of whose threads shares a core with another
/// model's busy thread, runs at that thread's pace;</item>
/// <item>cores left to the models above it (<paramref name="reservedCores"/>; 0: none): the thread, and the OpenMP team it
/// starts for attention on the CPU (whose threads take the affinity of the thread that starts them), run on the process's
/// cores but the first <paramref name="reservedCores"/>, so that the top model's tensor thread and the node's own
/// threads (its actors, its HTTP server, the copies) find a core free when they wake instead of waiting behind the
/// team; unless <paramref name="threads"/> says otherwise the team is as large as the cores left (Linux only).</item>
/// </list>
/// Where a call is refused, one line says so and the thread stays as it was.
/// </summary>
public sealed class HostShare(int nice, int threads = 0, int reservedCores = 0)
{
    [ThreadStatic] private static HostShare? _entered;

    public int Nice => nice;
    public int Threads => threads;
    public int ReservedCores => reservedCores;

    /// <summary>Gives the calling thread the nice value, the cores and the thread cap (once per thread: later calls return at once).</summary>
    public void Enter()
    {
        if (ReferenceEquals(_entered, this)) return;
        _entered = this;
        var cap = threads;
        if (reservedCores > 0 && LeaveCores(reservedCores) is { } left && cap == 0) cap = left;
        if (cap > 0)
        {
            var before = TorchSharp.torch.get_num_threads();
            TorchSharp.torch.set_num_threads(cap);
            // libtorch also keeps the last count asked for as the one every new thread starts with: a helper thread asks
            // for the count before, so that the cap stays this thread's own (its OpenMP setting is per thread).
            var restore = new Thread(() => TorchSharp.torch.set_num_threads(before));
            restore.Start();
            restore.Join();
        }
        if (nice == 0 || !OperatingSystem.IsLinux()) return;
        // setpriority(PRIO_PROCESS, tid) sets one thread's nice value on Linux; a thread may always lower its own priority.
        if (setpriority(0, gettid(), nice) != 0)
            Console.Error.WriteLine($"host threads: nice {nice} refused (errno {Marshal.GetLastPInvokeError()}); the thread keeps its priority");
    }

    /// <summary>The calling thread's nice value (Linux; 0 elsewhere).</summary>
    public static int CurrentNice() => OperatingSystem.IsLinux() ? getpriority(0, gettid()) : 0;

    /// <summary>The cores the calling thread may run on (Linux; the processor count elsewhere).</summary>
    public static int CurrentCores() => OperatingSystem.IsLinux() && Allowed() is { } mask ? Count(mask) : Environment.ProcessorCount;

    /// <summary>
    /// Moves the calling thread off the first <paramref name="reserved"/> of the cores it may run on; the cores it keeps, or
    /// null where nothing changed (not Linux, a refused call, or no core would be left).
    /// </summary>
    private static int? LeaveCores(int reserved)
    {
        if (!OperatingSystem.IsLinux()) return null;
        if (Allowed() is not { } mask)
        {
            Console.Error.WriteLine($"host threads: the thread's cores could not be read (errno {Marshal.GetLastPInvokeError()}); it keeps them all");
            return null;
        }
        var allowed = Count(mask);
        if (allowed <= reserved)
        {
            Console.Error.WriteLine($"host threads: {reserved} cores to leave of {allowed}: none would be left, so the thread keeps them all");
            return null;
        }
        var dropped = 0;
        for (var cpu = 0; cpu < mask.Length * 8 && dropped < reserved; cpu++)
        {
            if ((mask[cpu / 8] & (1 << (cpu % 8))) == 0) continue;
            mask[cpu / 8] &= (byte)~(1 << (cpu % 8));
            dropped++;
        }
        if (sched_setaffinity(0, (nuint)mask.Length, mask) != 0)
        {
            Console.Error.WriteLine($"host threads: cores refused (errno {Marshal.GetLastPInvokeError()}); the thread keeps them all");
            return null;
        }
        return allowed - reserved;
    }

    private static byte[]? Allowed()
    {
        var mask = new byte[128];
        return sched_getaffinity(0, (nuint)mask.Length, mask) == 0 ? mask : null;
    }

    private static int Count(byte[] mask) => mask.Sum(b => System.Numerics.BitOperations.PopCount(b));

    // pid 0: the calling thread.
    [DllImport("libc", SetLastError = true)]
    private static extern int sched_setaffinity(int pid, nuint size, byte[] mask);

    [DllImport("libc", SetLastError = true)]
    private static extern int sched_getaffinity(int pid, nuint size, byte[] mask);

    [DllImport("libc", SetLastError = true)]
    private static extern int setpriority(int which, int who, int prio);

    [DllImport("libc", SetLastError = true)]
    private static extern int getpriority(int which, int who);

    [DllImport("libc")]
    private static extern int gettid();
}
