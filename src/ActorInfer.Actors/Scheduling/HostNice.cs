using System.Runtime.InteropServices;

namespace ActorInfer.Actors.Scheduling;

/// <summary>
/// The host side of a model below the node's top priority: its tensor thread takes a higher nice value before its first
/// work, and the worker threads that thread starts for attention on the CPU (libtorch's OpenMP team of that thread)
/// inherit it. Where every core is busy, the threads of the models above it (which issue their kernels) run first; where
/// cores are idle it changes nothing. Linux only: elsewhere, or where the call is refused, one line says so and the thread
/// stays as it was.
/// </summary>
public sealed class HostNice(int nice)
{
    [ThreadStatic] private static int? _entered;

    public int Value => nice;

    /// <summary>Gives the calling thread the nice value (once per thread: later calls return at once).</summary>
    public void Enter()
    {
        if (_entered == nice) return;
        _entered = nice;
        if (nice == 0 || !OperatingSystem.IsLinux()) return;
        // setpriority(PRIO_PROCESS, tid) sets one thread's nice value on Linux; a thread may always lower its own priority.
        if (setpriority(0, gettid(), nice) != 0)
            Console.Error.WriteLine($"host threads: nice {nice} refused (errno {Marshal.GetLastPInvokeError()}); the thread keeps its priority");
    }

    /// <summary>The calling thread's nice value (Linux; 0 elsewhere).</summary>
    public static int Current() => OperatingSystem.IsLinux() ? getpriority(0, gettid()) : 0;

    [DllImport("libc", SetLastError = true)]
    private static extern int setpriority(int which, int who, int prio);

    [DllImport("libc", SetLastError = true)]
    private static extern int getpriority(int which, int who);

    [DllImport("libc")]
    private static extern int gettid();
}
