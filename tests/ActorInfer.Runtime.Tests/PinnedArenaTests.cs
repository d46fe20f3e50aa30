using ActorInfer.Model.Layers;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

/// <summary>
/// The CPU tier's memory made at start (<see cref="MemoryTier.PinAtStart"/>) and the buffers carved from it. On this
/// machine (no CUDA) the block is plain host memory, not page-locked: the same carving, without the registration.
/// </summary>
public sealed class PinnedArenaTests
{
    private const long MiB = 1L << 20;
    private static readonly long[] Large = [2, 1024, 1024]; // 8 MiB of float32

    private static long Address(Tensor t) => TensorData.Pointer(t);

    [Fact]
    public void LargeBuffersOfTheArenasTypeAreCarvedFromItAndGoBackWhenTheirLeasesEnd()
    {
        using var tier = MemoryTier.ForCpu(64 * MiB);
        tier.PinAtStart(32 * MiB, ScalarType.Float32);
        Assert.Equal(32 * MiB, tier.ArenaBytes);
        // Leases of other shapes, so that the tier keeps none of them for a shape of its own: each goes back to the arena.
        var first = tier.Allocate([2, 1024, 1024], ScalarType.Float32, "first");
        var second = tier.Allocate([3, 1024, 1024], ScalarType.Float32, "second");
        var start = Address(first.Tensor);
        // Carved one after the other (the 8 MiB of the first are whole 2 MiB ranges).
        Assert.Equal(start + 8 * MiB, Address(second.Tensor));
        Assert.Equal(0f, second.Tensor.abs().max().item<float>());
        Assert.Equal(20 * MiB, tier.BytesHeld);

        // Another type, or more than is left: made as before, outside the arena.
        using (var half = tier.Allocate([4, 1024, 1024], ScalarType.Float16, "another type"))
            Assert.False(Address(half.Tensor) >= start && Address(half.Tensor) < start + 32 * MiB);
        using (var big = tier.Allocate([4, 1024, 1024], ScalarType.Float32, "16 MiB, 12 left"))
            Assert.False(Address(big.Tensor) >= start && Address(big.Tensor) < start + 32 * MiB);

        // A range given back is carved again, zeroed again.
        first.Tensor.fill_(7f);
        first.Dispose();
        tier.Trim();
        using var again = tier.Allocate([1, 1024, 1024], ScalarType.Float32, "again");
        Assert.Equal(start, Address(again.Tensor));
        Assert.Equal(0f, again.Tensor.abs().max().item<float>());
        second.Dispose();
    }

    [Fact]
    public void RangesGivenBackCoalesceIntoOneThatHoldsALargerBuffer()
    {
        using var block = zeros(16 * MiB / 4, dtype: ScalarType.Float32);
        using var arena = new PinnedArena(block.alias(), null);
        var a = arena.Carve([1024, 1024])!.Value; // 4 MiB
        var b = arena.Carve([1024, 1024])!.Value;
        var c = arena.Carve([1024, 1024])!.Value;
        var d = arena.Carve([1024, 1024])!.Value;
        Assert.Null(arena.Carve([1]));
        Assert.Equal(16 * MiB, arena.CarvedBytes);
        var start = Address(a.Tensor);
        b.GiveBack();
        a.GiveBack();
        c.GiveBack();
        c.GiveBack(); // twice: once counts
        Assert.Equal(4 * MiB, arena.CarvedBytes);
        // a, b and c lie together again: a 12 MiB buffer fits where they were.
        var large = arena.Carve([3, 1024, 1024]);
        Assert.NotNull(large);
        Assert.Equal(start, Address(large.Value.Tensor));
        Assert.Null(arena.Carve([1]));
        foreach (var t in new[] { a.Tensor, b.Tensor, c.Tensor, d.Tensor, large.Value.Tensor }) t.Dispose();
    }

    [Fact]
    public void OnlyTheCpuTierMakesItsMemoryAtStartAndOnlyOnce()
    {
        using var device = MemoryTier.ForDevice(64 * MiB);
        Assert.Throws<InvalidOperationException>(() => device.PinAtStart(8 * MiB, ScalarType.Float32));
        using var cpu = MemoryTier.ForCpu(64 * MiB);
        Assert.Throws<ArgumentOutOfRangeException>(() => cpu.PinAtStart(MiB, ScalarType.Float32));
        cpu.PinAtStart(8 * MiB, ScalarType.Float32);
        Assert.Throws<InvalidOperationException>(() => cpu.PinAtStart(8 * MiB, ScalarType.Float32));
    }
}
