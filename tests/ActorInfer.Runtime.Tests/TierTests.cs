using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Placement;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

public sealed class TierTests
{
    [Fact]
    public void LeasesAccountBytesAndPeakAndGiveThemBack()
    {
        var tier = MemoryTier.ForCpu(1000);
        var a = tier.Allocate([10, 10], ScalarType.Float32, "a");
        var b = tier.Allocate([25], ScalarType.Float64, "b");
        Assert.Equal(600, tier.BytesHeld);
        a.Dispose();
        a.Dispose();
        Assert.Equal(200, tier.BytesHeld);
        Assert.Equal(600, tier.PeakBytes);
        b.Dispose();
        Assert.Equal(0, tier.BytesHeld);
        Assert.Equal(0, tier.LiveLeases);
    }

    [Fact]
    public void AnAllocationOverTheBudgetNamesTierNeededAndAllowed()
    {
        var tier = MemoryTier.ForDevice(100);
        using var held = tier.Allocate([20], ScalarType.Float32, "first");
        var e = Assert.Throws<TierBudgetExceededException>(() => tier.Allocate([10], ScalarType.Float32, "second"));
        Assert.Equal(TierKind.Device, e.Tier);
        Assert.Equal(120, e.BytesNeeded);
        Assert.Equal(100, e.BytesAllowed);
        Assert.Contains("Device tier", e.Message);
        Assert.Contains("120", e.Message);
        Assert.Contains("100", e.Message);
        Assert.Equal(80, tier.BytesHeld);
    }

    [Fact]
    public void DiskLeasesRoundTripBytesThroughRealFiles()
    {
        var folder = Harness.TempFolder();
        var disk = new DiskTier(folder, 1 << 20);
        using var source = arange(0, 24, dtype: ScalarType.Float32).reshape(2, 3, 4);
        using var into = zeros([2, 3, 4], dtype: ScalarType.Float32);
        using (var file = disk.Allocate(200, "test"))
        {
            Assert.True(File.Exists(file.Path));
            file.Write(source, 100);
            file.ReadInto(into, 100);
            Assert.Equal(200, disk.BytesHeld);
            Assert.Throws<ArgumentOutOfRangeException>(() => file.Write(source, 150));
        }
        Assert.True(into.equal(source).all().item<bool>());
        Assert.Equal(0, disk.BytesHeld);
        Assert.Empty(Directory.GetFiles(folder));
        Directory.Delete(folder);
    }

    [Fact]
    public void AMissingDiskFolderIsNamed()
    {
        var missing = Path.Combine(Path.GetTempPath(), "actorinfer-no-such-folder-" + Guid.NewGuid().ToString("N"));
        var e = Assert.Throws<DirectoryNotFoundException>(() => new DiskTier(missing, 1000));
        Assert.Contains(missing, e.Message);
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void AReadOnlyDiskFolderIsNamed()
    {
        var folder = Harness.TempFolder();
        File.SetUnixFileMode(folder, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        try
        {
            var e = Assert.Throws<UnauthorizedAccessException>(() => new DiskTier(folder, 1000));
            Assert.Contains(folder, e.Message);
        }
        finally
        {
            File.SetUnixFileMode(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            Directory.Delete(folder);
        }
    }

    [Fact]
    public void CopiesRunInIssueOrderAndAfterTheirDependency()
    {
        using var engine = new CpuCopyEngine();
        using var a = ones(1000);
        using var b = zeros(1000);
        using var c = zeros(1000);
        var first = engine.CopyAsync(b, a, CopyDirection.Load);
        var second = engine.CopyAfter(first, c, b, CopyDirection.Store);
        engine.BeforeCompute(second);
        Assert.Equal(1000f, c.sum().item<float>());
        Assert.Throws<ArgumentException>(() => engine.CopyAsync(zeros(3), a, CopyDirection.Load));
    }

    [Fact]
    public void ThePlannersPerLayerCacheFractionsAreTheRuntimesPlacement()
    {
        foreach (var (layers, batches, fractions) in new[]
                 {
                     (48, 4, new TierFractions(0.21, 0.79, 0)), (7, 3, new TierFractions(0.4, 0.35, 0.25)),
                     (5, 1, new TierFractions(0.5, 0.5, 0)), (2, 6, new TierFractions(0, 0.3, 0.7)),
                 })
        {
            var pairs = TierShares.AssignEqual(layers * batches, fractions);
            var planned = CachePairs.PerLayer(layers, batches, fractions);
            for (var l = 0; l < layers; l++)
            {
                var row = pairs.Skip(l * batches).Take(batches).ToArray();
                Assert.Equal(planned[l].Gpu * batches, row.Count(t => t == TierKind.Device), 9);
                Assert.Equal(planned[l].Cpu * batches, row.Count(t => t == TierKind.Cpu), 9);
                Assert.Equal(planned[l].Disk * batches, row.Count(t => t == TierKind.Disk), 9);
            }
        }
    }

    [Fact]
    public void MidpointRuleSplitsWholeTensorsByCumulativeBytes()
    {
        // Midpoints at 0.05, 0.3, 0.75 of the layer: with 40% GPU and 30% CPU they fall on GPU, GPU, disk.
        var tiers = TierShares.Assign([10, 40, 50], TierFractions.FromPercent(40, 30));
        Assert.Equal([TierKind.Device, TierKind.Device, TierKind.Disk], tiers);
        var pairs = TierShares.AssignEqual(10, new TierFractions(0.5, 0.3, 0.2));
        Assert.Equal(5, pairs.Count(t => t == TierKind.Device));
        Assert.Equal(3, pairs.Count(t => t == TierKind.Cpu));
        Assert.Equal(2, pairs.Count(t => t == TierKind.Disk));
    }

    [Fact]
    public void TorchSharpsLiveTensorCountIsReachableAndCountsThisThread()
    {
        var before = Harness.LiveTensors();
        Assert.NotNull(before);
        var t = zeros(3);
        Assert.Equal(before + 1, Harness.LiveTensors());
        t.Dispose();
        Assert.Equal(before, Harness.LiveTensors());
    }

    [Fact]
    public void CursorWalksEveryBatchOfALayerBeforeTheNextLayer()
    {
        var cursor = BlockCursor.First(2, 3);
        var order = new List<(int, int)>();
        BlockCursor? at = cursor;
        while (at is { } c)
        {
            order.Add((c.Layer.Value, c.Batch.Value));
            at = c.Next();
        }
        Assert.Equal([(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)], order);
        Assert.Equal((0, 2), (new BlockCursor(new(1), new(0), 2, 3).Previous()!.Value.Layer.Value, 2));
        Assert.Null(cursor.Previous());
    }
}

/// <summary>What counts as the device running out of memory (handled as pressure, not as a failure).</summary>
public sealed class DeviceMemoryTests
{
    [Theory]
    [InlineData("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.11 GiB total capacity; 77.02 GiB already allocated)", true)]
    [InlineData("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported", true)]
    [InlineData("Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!", false)]
    [InlineData("out of memory", false)]
    public void Libtorch_errors_are_recognised_by_their_message(string message, bool outOfMemory) =>
        Assert.Equal(outOfMemory, DeviceMemory.IsOutOfMemory(new System.Runtime.InteropServices.ExternalException(message)));

    [Fact]
    public void The_device_tier_refusing_is_out_of_memory_and_another_tier_refusing_is_not()
    {
        Assert.True(DeviceMemory.IsOutOfMemory(new TierBudgetExceededException(TierKind.Device, 10, 5, "a cache")));
        Assert.True(DeviceMemory.IsOutOfMemory(new InvalidOperationException("wrapped", new TierBudgetExceededException(TierKind.Device, 10, 5, "a cache"))));
        Assert.False(DeviceMemory.IsOutOfMemory(new TierBudgetExceededException(TierKind.Cpu, 10, 5, "a cache")));
    }
}

public sealed class KeptBufferTests
{
    private const long MiB = 1L << 20;
    private static readonly long[] Large = [2, 1024, 1024]; // 8 MiB of float32

    [Fact]
    public void AFreedLargeCpuBufferIsReusedForTheSameShapeAndCountsAsKeptMeanwhile()
    {
        var tier = MemoryTier.ForCpu(64 * MiB);
        var first = tier.Allocate(Large, ScalarType.Float32, "first", zeroed: false);
        var pointer = ActorInfer.Model.Layers.TensorData.Pointer(first.Tensor);
        first.Tensor.fill_(3);
        first.Dispose();
        Assert.Equal(0, tier.BytesHeld);
        Assert.Equal(8 * MiB, tier.KeptBytes);

        using var second = tier.Allocate(Large, ScalarType.Float32, "second", zeroed: false);
        Assert.Equal(pointer, ActorInfer.Model.Layers.TensorData.Pointer(second.Tensor));
        Assert.Equal(3f, second.Tensor[0, 0, 0].item<float>());
        Assert.Equal(8 * MiB, tier.BytesHeld);
        Assert.Equal(0, tier.KeptBytes);
    }

    [Fact]
    public void DisposingATierOrItsSetFreesWhatItKeptAndLeavesLeasesAlone()
    {
        var tier = MemoryTier.ForCpu(64 * MiB);
        tier.Allocate(Large, ScalarType.Float32, "kept").Dispose();
        using var held = tier.Allocate([1, 1024, 1024], ScalarType.Float32, "held");
        Assert.Equal(8 * MiB, tier.KeptBytes);
        tier.Dispose();
        Assert.Equal(0, tier.KeptBytes);
        Assert.Equal(4 * MiB, tier.BytesHeld);

        var set = TierSet.Create(64 * MiB, 64 * MiB, null, 0);
        set.Cpu.Allocate(Large, ScalarType.Float32, "kept").Dispose();
        Assert.Equal(8 * MiB, set.Cpu.KeptBytes);
        set.Dispose();
        Assert.Equal(0, set.Cpu.KeptBytes);
    }

    [Fact]
    public void AReusedBufferAskedZeroedComesBackZeroed()
    {
        var tier = MemoryTier.ForCpu(64 * MiB);
        var first = tier.Allocate(Large, ScalarType.Float32, "first", zeroed: false);
        first.Tensor.fill_(5);
        first.Dispose();
        using var second = tier.Allocate(Large, ScalarType.Float32, "second");
        Assert.Equal(0f, second.Tensor.abs().max().item<float>());
    }

    [Fact]
    public void KeptBuffersAreFreedForANewShapeThatWouldNotFitBesideThem()
    {
        var tier = MemoryTier.ForCpu(12 * MiB);
        tier.Allocate(Large, ScalarType.Float32, "first").Dispose();
        Assert.Equal(8 * MiB, tier.KeptBytes);
        using var other = tier.Allocate([1, 1024, 1024], ScalarType.Float32, "other"); // 4 MiB: 8 + 4 fits 12
        Assert.Equal(8 * MiB, tier.KeptBytes);
        using var third = tier.Allocate([2, 1024, 1024], ScalarType.Int32, "third"); // 8 MiB more: the kept one goes
        Assert.Equal(0, tier.KeptBytes);
        Assert.Equal(12 * MiB, tier.BytesHeld);
    }

    [Fact]
    public void ALowerBudgetFreesKeptBuffersAndTrimFreesTheRest()
    {
        var tier = MemoryTier.ForCpu(64 * MiB);
        var before = Harness.LiveTensors();
        var a = tier.Allocate(Large, ScalarType.Float32, "a");
        var b = tier.Allocate(Large, ScalarType.Float32, "b");
        a.Dispose();
        b.Dispose();
        Assert.Equal(16 * MiB, tier.KeptBytes);
        tier.SetBudget(10 * MiB);
        Assert.Equal(8 * MiB, tier.KeptBytes);
        tier.Trim();
        Assert.Equal(0, tier.KeptBytes);
        Assert.Equal(before, Harness.LiveTensors());
    }

    [Fact]
    public void SmallBuffersAndTheDeviceTierKeepNothing()
    {
        var cpu = MemoryTier.ForCpu(64 * MiB);
        cpu.Allocate([16], ScalarType.Float32, "small").Dispose();
        Assert.Equal(0, cpu.KeptBytes);
        var device = new MemoryTier(TierKind.Device, 64 * MiB, CPU, pin: false);
        device.Allocate(Large, ScalarType.Float32, "large on the device").Dispose();
        Assert.Equal(0, device.KeptBytes);
    }
}

public sealed class WeightCopiesTests
{
    [Fact]
    public void SharesIssuePiecesInOrderUntilTheirFractionAndTheWholeLayerArrives()
    {
        using var engine = new CpuCopyEngine();
        var tiers = new TierSet(MemoryTier.ForDevice(1 << 20), MemoryTier.ForCpu(1 << 20), null);
        using var sourceA = arange(1000, ScalarType.Float32).reshape(10, 100);
        using var sourceB = arange(24, ScalarType.Float32);
        using var targetA = zeros(10, 100);
        using var targetB = zeros(24);
        var transfers = new Transfers(engine, tiers);
        // 4000 + 96 bytes in pieces of at most 1024 bytes: four of A's (1024, 1024, 1024, 928), one of B's.
        var copies = new WeightCopies(transfers, pieceBytes: 1024);
        copies.Add(targetA, sourceA);
        copies.Add(targetB, sourceB);

        copies.IssueThrough(0.25); // 1024 of 4096 bytes: the first piece
        Assert.Equal(1024, copies.Issued);
        copies.IssueThrough(0.25);
        Assert.Equal(1024, copies.Issued);
        copies.IssueThrough(0.6); // 2458 bytes: pieces go whole, so three
        Assert.Equal(3072, copies.Issued);
        copies.IssueThrough(1);
        Assert.Equal(4096, copies.Issued);
        transfers.Complete();
        Assert.True(targetA.equal(sourceA).all().item<bool>());
        Assert.True(targetB.equal(sourceB).all().item<bool>());
    }

    [Theory]
    // Already on a boundary: nothing skipped; the length rounds up to whole pages.
    [InlineData(0x10000, 5_000_000, 2, 0, 5_001_216)]
    // 64 bytes past a boundary (what the C library's aligned allocation gives): the rest of that page is skipped.
    [InlineData(0x10040, 4_194_304, 4, 4032, 4_194_304)]
    [InlineData(0x7f00_0000_1010, 4_194_306, 2, 4080, 4_198_400)]
    public void A_registered_range_is_whole_pages_inside_its_own_allocation(long start, long bytes, long element, long skip, long registered)
    {
        var range = MemoryTier.PageOwnedRange((nint)start, bytes, 4096, element);
        Assert.Equal((skip, registered), range);
        // Inside the allocation (the buffer's bytes and two pages more), starting and ending on page boundaries.
        Assert.True(range.SkipBytes + range.RegisteredBytes <= bytes + 2 * 4096);
        Assert.Equal(0, (start + range.SkipBytes) % 4096);
        Assert.Equal(0, range.RegisteredBytes % 4096);
    }

    [Fact]
    public void A_buffer_that_cannot_start_on_a_page_in_whole_elements_is_refused()
    {
        var error = Assert.Throws<InvalidOperationException>(() => MemoryTier.PageOwnedRange(0x10001, 8_000_000, 4096, 2));
        Assert.Contains("whole elements of 2 bytes", error.Message);
        Assert.Throws<ArgumentException>(() => MemoryTier.PageOwnedRange(0x10000, 8_000_000, 4000, 2));
    }
}
