using ActorInfer.Planning;

namespace ActorInfer.Planning.Tests;

/// <summary>Round numbers so that every expected figure can be computed by hand.</summary>
internal static class TestData
{
    /// <summary>2 layers, hidden 8, 2 heads, FFN 32, vocabulary 100, 10 positions, float16.</summary>
    public static ModelSpec TinyModel { get; } = new("tiny", numLayers: 2, hiddenSize: 8, numHeads: 2, ffnSize: 32, vocabSize: 100, maxPositions: 10);

    /// <summary>Every link moves 1000 bytes/s unless told otherwise; every processor does 1e6 FLOP/s.</summary>
    public static HardwareProfile RoundProfile { get; } = new()
    {
        Name = "round",
        GpuMemoryBytes = 1_000_000,
        CpuMemoryBytes = 10_000_000,
        DiskBytes = 100_000_000,
        CpuToGpuBytesPerSecond = 1000,
        CpuToGpuCacheBytesPerSecond = 500,
        GpuToCpuBytesPerSecond = 1000,
        GpuToCpuCacheBytesPerSecond = 250,
        DiskToCpuBytesPerSecond = 100,
        DiskToCpuCacheBytesPerSecond = 50,
        CpuToDiskBytesPerSecond = 100,
        CpuToDiskCacheBytesPerSecond = 20,
        GpuMatmulPrefillFlops = 1e6,
        GpuMatmulDecodeFlops = 1e5,
        GpuBatchedMatmulPrefillFlops = 1e6,
        GpuBatchedMatmulDecodeFlops = 1e4,
        CpuAttentionFlops = 1e3,
        GpuMemoryBytesPerSecond = 1e12,
    };

    public static Policy Place(TierFractions weights, TierFractions cache, TierFractions activations, int batch = 2, int count = 1, bool cpuAttention = true) =>
        new(batch, count, weights, cache, activations) { CpuAttention = cpuAttention };

    public static TierFractions Gpu => TierFractions.AllGpu;
    public static TierFractions Cpu => TierFractions.AllCpu;
    public static TierFractions Disk => TierFractions.AllDisk;
}
