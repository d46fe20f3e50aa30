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
