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
/// model's busy thread, runs at that thread's pace.</item>
/// </list>
/// Where a call is refused, one line says so and the thread stays as it was.
/// </summary>
public sealed class HostShare(int nice, int threads = 0)
{
    [ThreadStatic] private static HostShare? _entered;

    public int Nice => nice;
    public int Threads => threads;

    /// <summary>Gives the calling thread the nice value and the thread cap (once per thread: later calls return at once).</summary>
    public void Enter()
    {
        if (ReferenceEquals(_entered, this)) return;
        _entered = this;
        if (threads > 0)
        {
            var before = TorchSharp.torch.get_num_threads();
            TorchSharp.torch.set_num_threads(threads);
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

    [DllImport("libc", SetLastError = true)]
    private static extern int setpriority(int which, int who, int prio);

    [DllImport("libc", SetLastError = true)]
    private static extern int getpriority(int which, int who);

    [DllImport("libc")]
    private static extern int gettid();
}
