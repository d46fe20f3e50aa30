using System.Diagnostics;
using ActorInfer.Model.Layers;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Profiling;

/// <summary>
/// Measures the rates the cost model needs on this machine, through the same paths the runtime uses: the copy
/// engine for host/device copies, the disk tier for disk reads and writes, <see cref="CpuAttentionProbe"/> for CPU
/// attention.
/// </summary>
/// <param name="attention">The attention width CPU attention is timed at (the planned model's; by default OPT-6.7B's).</param>
public sealed class HardwareProber(Device device, string diskFolder, Action<string> log, AttentionShape? attention = null)
{
    private readonly AttentionShape _attention = attention ?? AttentionShape.Default;
    private bool IsCuda => device.type == TorchSharp.DeviceType.CUDA;
    private const int HiddenSize = 4096; // shapes of a mid-size OPT layer (6.7B); rates are reused for every model

    public HardwareProfile Measure(string name)
    {
        using var scope = NewDisposeScope();
        using ICopyEngine copies = IsCuda ? new CudaCopyEngine() : new CpuCopyEngine();
        // Disposed at the end: the buffers the CPU tier keeps for reuse are registered with the driver, and must be
        // unregistered before their memory goes.
        using var host = MemoryTier.ForCpu(long.MaxValue);
        using var dev = MemoryTier.ForDevice(long.MaxValue);
        const long copyBytes = 512L << 20;
        var hostBuffer = host.Allocate([copyBytes / 2], ScalarType.Float16, "profile host buffer");
        var deviceBuffer = dev.Allocate([copyBytes / 2], ScalarType.Float16, "profile device buffer");
        var toDevice = Rate("cpu -> device copy", copyBytes, () => copies.CopyAsync(deviceBuffer.Tensor, hostBuffer.Tensor, CopyDirection.Load).Wait());
        var toHost = Rate("device -> cpu copy", copyBytes, () => copies.CopyAsync(hostBuffer.Tensor, deviceBuffer.Tensor, CopyDirection.Store).Wait());
        var deviceMemory = IsCuda
            ? Rate("device memory (copy within the device)", 2 * copyBytes, () =>
            {
                using var copy = deviceBuffer.Tensor.clone();
            }, sync: Sync)
            : Rate("host memory (copy within the host)", 2 * copyBytes, () =>
            {
                using var copy = hostBuffer.Tensor.clone();
            });

        var disk = new DiskTier(diskFolder, long.MaxValue);
        using var file = disk.Allocate(copyBytes, "profile file");
        var diskWrite = Rate("cpu -> disk", copyBytes, () => file.Write(hostBuffer.Tensor, 0));
        var diskRead = Rate("disk -> cpu", copyBytes, () => file.ReadInto(hostBuffer.Tensor, 0));
        hostBuffer.Dispose();
        deviceBuffer.Dispose();

        var dtype = IsCuda ? ScalarType.Float16 : ScalarType.Float32;
        var matmulPrefill = Matmul("matmul, prefill shape", 4096, dtype);
        var matmulDecode = Matmul("matmul, decode shape", DecodeTokens, dtype);
        var bmmPrefill = Attention("attention, prefill shape", batch: 4, queries: 512, keys: 512, dtype, device);
        var bmmDecode = Attention("attention, decode shape", batch: 32, queries: 1, keys: 544, dtype, device);
        var attentionProbe = new CpuAttentionProbe(copies, host, dev, log);
        var attentionPoints = attentionProbe.Measure(_attention);
        var (cpuAttention, cpuAttentionFit) = CpuAttentionFit.FromRates(attentionPoints.Select(p => (p.GpuBatchSize, p.FlopsPerSecond)).ToArray());
        log($"CPU attention fit: {cpuAttention / 1e9:F2} GFLOP/s at batch 64, batch coefficient {cpuAttentionFit.Batch:F4}");
        // Over a compressed cache: the rate at batch 64 by the same fit's correction (the points' mean ratio to the fit's).
        var codesPoints = attentionProbe.Measure(_attention, compressed: true);
        var cpuAttentionCodes = codesPoints.Average(p => p.FlopsPerSecond / cpuAttentionFit.Factor(p.GpuBatchSize, _attention.HiddenSize));
        log($"CPU attention over a compressed cache: {cpuAttentionCodes / 1e9:F2} GFLOP/s at batch 64 by the same batch correction");
        var batchOverhead = new GpuBatchOverheadProbe(copies, log).Measure(dtype);

        return new HardwareProfile
        {
            Name = name,
            GpuMemoryBytes = IsCuda ? MachineMemory.Device().Total : MachineMemory.HostAvailable() / 2,
            CpuMemoryBytes = MachineMemory.HostAvailable(),
            DiskBytes = MachineMemory.DiskFree(diskFolder),
            CpuToGpuBytesPerSecond = toDevice,
            CpuToGpuCacheBytesPerSecond = toDevice,
            GpuToCpuBytesPerSecond = toHost,
            GpuToCpuCacheBytesPerSecond = toHost,
            DiskToCpuBytesPerSecond = diskRead,
            DiskToCpuCacheBytesPerSecond = diskRead,
            CpuToDiskBytesPerSecond = diskWrite,
            CpuToDiskCacheBytesPerSecond = diskWrite,
            GpuMatmulPrefillFlops = matmulPrefill,
            GpuMatmulDecodeFlops = matmulDecode,
            GpuMatmulDecodeTokens = DecodeTokens,
            GpuBatchedMatmulPrefillFlops = bmmPrefill,
            GpuBatchedMatmulDecodeFlops = bmmDecode,
            CpuAttentionFlops = cpuAttention,
            CpuAttentionCodesFlops = cpuAttentionCodes,
            CpuAttentionFit = cpuAttentionFit,
            GpuMemoryBytesPerSecond = deviceMemory,
            GpuBatchOverheadSeconds = batchOverhead,
            Source = $"measured by `actorinfer profile` on {Environment.MachineName} at {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC ({(IsCuda ? "cuda" : "cpu")}); " +
                     $"CPU attention as the runtime's decoding step runs it (over a plain cache and a compressed one), hidden {_attention.HiddenSize} in {_attention.Heads} heads, GPU batches {string.Join(", ", CpuAttentionProbe.BatchSizes)}; " +
                     $"per-position overhead from the runtime's decoding step of a {GpuBatchOverheadProbe.Layers}-layer model of hidden 64, {GpuBatchOverheadProbe.GpuBatches} GPU batches of 1",
        }.Validate();
    }

    /// <summary>The tokens of the decode-shaped product the decode rate is measured with.</summary>
    private const int DecodeTokens = 32;

    private void Sync()
    {
        if (IsCuda) cuda.synchronize();
    }

    /// <summary>
    /// Median rate of five timed samples after one warm-up. A sample repeats the work until it has run for about 20 ms
    /// and waits for the device once at its end: a single call of a short kernel would time the launch and the wait.
    /// </summary>
    private double Rate(string what, double unitsPerRun, Action run, string unit = "GB/s", double scale = 1e9, Action? sync = null)
    {
        var warm = Stopwatch.StartNew();
        run();
        sync?.Invoke();
        var repeats = (int)Math.Clamp(Math.Ceiling(0.02 / Math.Max(warm.Elapsed.TotalSeconds, 1e-6)), 1, 1000);
        var samples = new List<double>();
        for (var i = 0; i < 5; i++)
        {
            var watch = Stopwatch.StartNew();
            for (var r = 0; r < repeats; r++) run();
            sync?.Invoke();
            samples.Add(unitsPerRun * repeats / watch.Elapsed.TotalSeconds);
        }
        var median = samples.Order().ElementAt(samples.Count / 2);
        log($"{what}: {median / scale:F2} {unit}");
        return median;
    }

    private double Matmul(string what, int tokens, ScalarType dtype)
    {
        using var x = randn([tokens, HiddenSize], dtype: dtype, device: device);
        using var w = randn([4 * HiddenSize, HiddenSize], dtype: dtype, device: device) * 0.01;
        var flops = 2.0 * tokens * HiddenSize * 4 * HiddenSize;
        return Rate(what, flops, () =>
        {
            using var y = nn.functional.linear(x, w);
        }, "TFLOP/s", 1e12, Sync);
    }

    private double Attention(string what, int batch, int queries, int keys, ScalarType dtype, Device on)
    {
        const int heads = 32, headDim = 128;
        using var q = randn([batch, heads, queries, headDim], dtype: dtype, device: on);
        using var k = randn([batch, heads, keys, headDim], dtype: dtype, device: on);
        using var v = randn([batch, heads, keys, headDim], dtype: dtype, device: on);
        using var mask = ones([batch, 1, queries, keys], dtype: ScalarType.Bool, device: on);
        var flops = 4.0 * batch * heads * queries * keys * headDim;
        return Rate(what, flops, () =>
        {
            // A decoding shape attends as the engine does by default (our fused kernel on CUDA where it applies).
            using var context = AttentionMath.Attend(q, k, v, mask, decode: queries == 1 ? DecodeAttention.Fused : DecodeAttention.Products);
        }, "TFLOP/s", 1e12, on.type == TorchSharp.DeviceType.CUDA ? Sync : null);
    }
}
