using System.Globalization;
using System.Runtime.InteropServices;

namespace ActorInfer.Runtime.Cuda;

/// <summary>
/// libtorch's CUDA caching allocator reads <c>PYTORCH_CUDA_ALLOC_CONF</c> from the process environment when it
/// first allocates. .NET's <see cref="Environment.SetEnvironmentVariable(string, string)"/> does not reach the C
/// library's environment, so the variable is set with <c>setenv</c> itself, before any tensor touches the device.
/// </summary>
public static partial class AllocatorSettings
{
    public const string Variable = "PYTORCH_CUDA_ALLOC_CONF";

    /// <summary>
    /// Segments that grow in place (<c>expandable_segments:True</c>) instead of fixed blocks cached by size: the
    /// reserve the device reports stays close to the bytes in use, so a GPU budget holds as the device reports
    /// it. A value already set in the environment (for example <c>expandable_segments:False</c>) is kept.
    /// </summary>
    public const string Default = "expandable_segments:True";

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);

    /// <summary>The key that caps what the caching allocator reserves, as a share of the device's total memory.</summary>
    public const string FractionKey = "per_process_memory_fraction";

    /// <summary>
    /// Memory the device reports for the process beyond the CUDA context measured at start and the allocator's reserve: the
    /// libraries' handles and loaded kernels made later (up to 0.25 GiB measured on an H100, docs/perf/h100-device-peak/).
    /// </summary>
    public const long OutsideAllocatorBytes = 256L << 20;

    private static readonly object Gate = new();
    private static long? _capBytes;
    private static bool _capAsked;

    /// <summary>The cap this process gave the allocator (<see cref="CapDevice"/>); null when none was given.</summary>
    public static long? CapBytes
    {
        get { lock (Gate) return _capBytes; }
    }

    /// <summary>
    /// The allocator's configuration with its reserve capped at <paramref name="fraction"/> of the device: the fraction
    /// added to <paramref name="current"/>, or <paramref name="current"/> kept where it names a fraction of its own.
    /// </summary>
    public static string WithFraction(string? current, double fraction)
    {
        if (!(fraction > 0 && fraction <= 1))
            throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "a share of the device's memory, in (0, 1]");
        // Rounded down to a millionth of the device (at most 0.1 MB of an 80 GB card), so that the cap never grows.
        var rounded = Math.Max(1e-6, Math.Floor(fraction * 1e6) / 1e6);
        var setting = $"{FractionKey}:{rounded.ToString("0.000000", CultureInfo.InvariantCulture)}";
        if (string.IsNullOrWhiteSpace(current)) return setting;
        return current.Contains(FractionKey, StringComparison.Ordinal) ? current : $"{current.TrimEnd(',')},{setting}";
    }

    /// <summary>
    /// The bytes the allocator may reserve so that the device reports no more than <paramref name="budget"/> for the process:
    /// the budget less the context measured at start and <see cref="OutsideAllocatorBytes"/>; null where the budget is the
    /// whole device (no cap needed) or leaves nothing (the budget is refused elsewhere).
    /// </summary>
    public static long? CapFor(long budget, long contextBytes, long totalBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(contextBytes);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(totalBytes);
        if (budget >= totalBytes) return null;
        var cap = budget - contextBytes - OutsideAllocatorBytes;
        if (cap <= 0) return null;
        return cap;
    }

    /// <summary>
    /// Caps what libtorch's caching allocator reserves on the device at <see cref="CapFor"/>'s bytes: past them it gives
    /// back its cached free blocks and tries again before it fails, so the allocator's reserve beyond the tensors cannot
    /// carry the device past the budget. The allocator reads its configuration once, when it is first used (a device
    /// tensor, or pinned host memory): call this before either. The first call of a process decides; a later one changes
    /// nothing. A fraction the environment already names is kept. Returns the cap given, or null.
    /// </summary>
    public static long? CapDevice(long budget, long contextBytes, long totalBytes)
    {
        lock (Gate)
        {
            if (_capAsked) return _capBytes;
            _capAsked = true;
            if (CapFor(budget, contextBytes, totalBytes) is not { } cap) return null;
            var current = Environment.GetEnvironmentVariable(Variable);
            if (current?.Contains(FractionKey, StringComparison.Ordinal) == true) return null;
            var value = WithFraction(current, (double)cap / totalBytes);
            if (OperatingSystem.IsLinux() && SetEnv(Variable, value, 1) != 0)
                throw new InvalidOperationException($"setenv {Variable} failed (errno {Marshal.GetLastPInvokeError()})");
            Environment.SetEnvironmentVariable(Variable, value);
            _capBytes = cap;
            return cap;
        }
    }

    /// <summary>Sets the allocator's configuration unless the environment already names one; returns the one in effect.</summary>
    public static string Apply()
    {
        var current = Environment.GetEnvironmentVariable(Variable);
        if (!string.IsNullOrEmpty(current)) return current;
        if (OperatingSystem.IsLinux() && SetEnv(Variable, Default, 0) != 0)
            throw new InvalidOperationException($"setenv {Variable} failed (errno {Marshal.GetLastPInvokeError()})");
        Environment.SetEnvironmentVariable(Variable, Default);
        return Default;
    }
}
