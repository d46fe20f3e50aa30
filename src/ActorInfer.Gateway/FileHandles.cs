using System.Runtime.InteropServices;

namespace ActorInfer.Gateway;

/// <summary>
/// The process's file handles: its limit (RLIMIT_NOFILE) and how many are open. Every connection is a handle, and so
/// is every journal, model and /proc read: a node whose connections take the last handle cannot read its own files.
/// </summary>
public static class FileHandles
{
    /// <summary>
    /// Handles kept back from connections for everything else the node opens (journal and its write-ahead log,
    /// model files, the data folder's lock, /proc reads, libtorch's own), with a wide margin.
    /// </summary>
    public const int Reserve = 1024;

    private const int RlimitNofile = 7;

    [StructLayout(LayoutKind.Sequential)]
    private struct RLimit
    {
        public ulong Current;
        public ulong Max;
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int getrlimit(int resource, out RLimit limit);

    [DllImport("libc", SetLastError = true)]
    private static extern int setrlimit(int resource, ref RLimit limit);

    /// <summary>The soft limit in force; null where it cannot be read (not Linux).</summary>
    public static long? Limit() =>
        OperatingSystem.IsLinux() && getrlimit(RlimitNofile, out var limit) == 0 ? (long)Math.Min(limit.Current, int.MaxValue) : null;

    /// <summary>
    /// Raises the soft limit towards <paramref name="wanted"/>: up to the hard limit always, past it where the process
    /// may (it needs CAP_SYS_RESOURCE). Returns the limit in force afterwards.
    /// </summary>
    public static long? Raise(long wanted)
    {
        if (!OperatingSystem.IsLinux() || getrlimit(RlimitNofile, out var limit) != 0) return null;
        if ((long)limit.Current >= wanted) return Limit();
        var raised = new RLimit { Current = (ulong)wanted, Max = Math.Max(limit.Max, (ulong)wanted) };
        if (setrlimit(RlimitNofile, ref raised) != 0 && (long)limit.Max > (long)limit.Current)
        {
            // Not allowed past the hard limit: take the hard limit.
            raised = new RLimit { Current = limit.Max, Max = limit.Max };
            setrlimit(RlimitNofile, ref raised);
        }
        return Limit();
    }

    /// <summary>Handles open now (entries of /proc/self/fd); null where that cannot be read.</summary>
    public static int? Open()
    {
        try
        {
            return Directory.EnumerateFileSystemEntries("/proc/self/fd").Count();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
