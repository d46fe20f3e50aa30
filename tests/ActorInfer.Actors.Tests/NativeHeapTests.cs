using ActorInfer.Actors.Node;

namespace ActorInfer.Actors.Tests;

/// <summary>The node's allocator settings take on glibc (the development and CI machines), or say why not.</summary>
public sealed class NativeHeapTests
{
    [Fact]
    public void Glibc_takes_the_arena_and_mapping_settings_unless_the_environment_sets_them()
    {
        var report = NativeHeap.Tune();
        Assert.StartsWith("native heap: ", report);
        if (!OperatingSystem.IsLinux()) return;
        if (Environment.GetEnvironmentVariable("MALLOC_ARENA_MAX") is null) Assert.Contains($"{NativeHeap.Arenas} arenas", report);
        if (Environment.GetEnvironmentVariable("MALLOC_MMAP_THRESHOLD_") is null) Assert.Contains($"{NativeHeap.MmapThreshold >> 20} MiB", report);
    }
}
