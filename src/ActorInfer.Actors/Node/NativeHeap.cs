using System.Runtime.InteropServices;

namespace ActorInfer.Actors.Node;

/// <summary>
/// glibc's allocator, set for a process that runs for days: libtorch's tensors, SQLite and Kestrel's native parts
/// allocate from it on many threads. By default glibc gives threads up to eight arenas per core and raises its mmap
/// threshold each time a large block is freed, so large buffers of changing sizes (blocks grow and shrink with the
/// budgets) end up inside arenas whose freed pages are rarely given back: resident memory then creeps up for hours.
/// A fixed threshold keeps large buffers in their own mappings (returned to the system when freed) and two arenas keep
/// small allocations together. Environment variables (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_) set by an operator win.
/// The threshold is glibc's own ceiling for its moving one (32 MiB), not lower: the temporaries of attention on the CPU
/// (a layer's scores, its queries and contexts: hundreds of KiB to tens of MiB, made and freed at every layer step) stay
/// in the arenas, where they are reused warm. Mapped on their own, each is page-faulted in and unmapped again at every
/// layer step: under a threshold of 128 KiB an OPT-30B node's blocks with attention on the CPU took 1.46x as long as
/// bench's with the same policy, and a CPU bench's prefill 1.4x as long (docs/perf/h100-heap-30b-tenants-8x).
/// </summary>
public static class NativeHeap
{
    private const int MTrimThreshold = -1;
    private const int MMmapThreshold = -3;
    private const int MArenaMax = -8;

    /// <summary>Allocations at least this large get a mapping of their own.</summary>
    public const int MmapThreshold = 32 * 1024 * 1024;

    public const int Arenas = 2;

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int MallOpt(int param, int value);

    /// <summary>Applies the settings where the process runs on glibc; returns what was set, or why nothing was.</summary>
    public static string Tune()
    {
        if (!OperatingSystem.IsLinux()) return "native heap: left as it is (not Linux)";
        var set = new List<string>();
        try
        {
            if (Environment.GetEnvironmentVariable("MALLOC_ARENA_MAX") is null && MallOpt(MArenaMax, Arenas) == 1) set.Add($"{Arenas} arenas");
            if (Environment.GetEnvironmentVariable("MALLOC_MMAP_THRESHOLD_") is null && MallOpt(MMmapThreshold, MmapThreshold) == 1
                && MallOpt(MTrimThreshold, 2 * MmapThreshold) == 1)
                set.Add($"blocks of {MmapThreshold >> 20} MiB and more mapped on their own");
        }
        catch (Exception ex) when (ex is EntryPointNotFoundException or DllNotFoundException)
        {
            return $"native heap: left as it is (no glibc mallopt: {ex.Message})";
        }
        return set.Count > 0 ? "native heap: " + string.Join(", ", set) : "native heap: set by the environment";
    }
}
