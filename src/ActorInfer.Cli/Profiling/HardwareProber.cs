using System.Diagnostics;
using ActorInfer.Model.Layers;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.CpuAttention;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Cli.Profiling;

/// <summary>
/// Measures the rates the cost model needs on this machine, through the same paths the runtime uses: the copy
/// engine for host/device copies, the disk tier for disk reads and writes, and for CPU attention the runtime's
/// kernel on its worker thread over a cache laid out as the runtime lays it out.
/// </summary>
public sealed class HardwareProber(Device device, string diskFolder, Action<string> log, CpuAttentionKernel? kernel = null)
{
    private readonly CpuAttentionKernel _kernel = kernel ?? CpuAttentionKernel.Default;

    private bool IsCuda => device.type == TorchSharp.DeviceType.CUDA;
    private const int HiddenSize = 4096; // shapes of a mid-size OPT layer (6.7B); rates are reused for every model

    public HardwareProfile Measure(string name)
    {
        using var scope = NewDisposeScope();
        using ICopyEngine copies = IsCuda ? new CudaCopyEngine() : new CpuCopyEngine();
        var host = MemoryTier.ForCpu(long.MaxValue);
        var dev = MemoryTier.ForDevice(long.MaxValue);
        const long copyBytes = 512L << 20;
        var hostBuffer = host.Allocate([copyBytes / 2], ScalarType.Float16, "profile host buffer");
        var deviceBuffer = dev.Allocate([copyBytes / 2], ScalarType.Float16, "profile device buffer");
        var toDevice = Rate("cpu -> device copy", copyBytes, () => copies.CopyAsync(deviceBuffer.Tensor, hostBuffer.Tensor, CopyDirection.Load).Wait());
        var toHost = Rate("device -> cpu copy", copyBytes, () => copies.CopyAsync(hostBuffer.Tensor, deviceBuffer.Tensor, CopyDirection.Store).Wait());
        var deviceMemory = IsCuda
            ? Rate("device memory (copy within the device)", 2 * copyBytes, () =>
            {
                using var copy = deviceBuffer.Tensor.clone();
                Sync();
            })
            : Rate("host memory (copy within the host)", 2 * copyBytes, () =>
            {
                using var copy = hostBuffer.Tensor.clone();
            });

        var disk = new DiskTier(diskFolder, long.MaxValue);
        using var file = disk.Allocate(copyBytes, "profile file");
        var diskWrite = Rate("cpu -> disk", copyBytes, () => file.Write(hostBuffer.Tensor, 0));
        var diskRead = Rate("disk -> cpu", copyBytes, () => file.ReadInto(hostBuffer.Tensor, 0));
        var cpuAttention = CpuAttention(copies, hostBuffer.Tensor, deviceBuffer.Tensor);
        var hostPerPosition = PositionProbe.SecondsPerPosition(device, IsCuda ? ScalarType.Float16 : ScalarType.Float32, _kernel, log);
        hostBuffer.Dispose();
        deviceBuffer.Dispose();

        var dtype = IsCuda ? ScalarType.Float16 : ScalarType.Float32;
        var matmulPrefill = Matmul("matmul, prefill shape", 4096, dtype);
        var matmulDecode = Matmul("matmul, decode shape", 32, dtype);
        var bmmPrefill = Attention("attention, prefill shape", batch: 4, queries: 512, keys: 512, dtype, device);
        var bmmDecode = Attention("attention, decode shape", batch: 32, queries: 1, keys: 544, dtype, device);

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
            GpuBatchedMatmulPrefillFlops = bmmPrefill,
            GpuBatchedMatmulDecodeFlops = bmmDecode,
            CpuAttentionFlops = cpuAttention.Flops,
            CpuAttentionSecondsPerCall = cpuAttention.SecondsPerCall,
            HostSecondsPerPosition = hostPerPosition,
            GpuMemoryBytesPerSecond = deviceMemory,
            Source = $"measured by `actorinfer profile` at {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC ({(IsCuda ? "cuda" : "cpu")}, {Environment.ProcessorCount} logical processors; " +
                     $"CPU attention: kernel {_kernel.Spec} on its worker thread{(IsCuda ? ", while weights stream to the device" : "")})",
        }.Validate();
    }

    private void Sync()
    {
        if (IsCuda) cuda.synchronize();
    }

    /// <summary>Median rate of five timed repetitions after one warm-up.</summary>
    private double Rate(string what, double unitsPerRun, Action run, string unit = "GB/s", double scale = 1e9)
    {
        run();
        var samples = new List<double>();
        for (var i = 0; i < 5; i++)
        {
            var watch = Stopwatch.StartNew();
            run();
            samples.Add(unitsPerRun / watch.Elapsed.TotalSeconds);
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
            Sync();
        }, "TFLOP/s", 1e12);
    }

    /// <summary>
    /// CPU attention as the runtime runs it in a decoding step: one GPU batch per call (32 heads of 128, a 544-token
    /// prefix of a 576-entry cache in the CPU tier, strided as the cache is), the new entry written in place, the
    /// runtime's kernel on a CPU attention worker thread. On CUDA the runtime streams the next layer's weights from
    /// pinned CPU memory meanwhile, which shares the CPU's memory bandwidth, so the calls are timed with such copies
    /// running (and once alone, for the log). Calls of 4, 16 and 32 sequences give the rate (the slope, FLOP/s) and
    /// the fixed time of a call (the intercept), by least squares.
    /// </summary>
    private (double Flops, double SecondsPerCall) CpuAttention(ICopyEngine copies, Tensor hostBuffer, Tensor deviceBuffer)
    {
        using var worker = new CpuAttentionWorker(_kernel);
        (double Flops, double Seconds) Call(int batch)
        {
            var shape = new AttentionShape(batch, Heads: 32, HeadDim: 128, Capacity: 576, Context: 544);
            using var bench = new AttentionBench(shape, ScalarType.Float16, masked: false);
            return (shape.Flops, RunOn(worker, () => bench.Time(_kernel, threads: null, repeats: 9).Seconds));
        }
        var alone = Call(32);
        log($"CPU attention ({_kernel.Spec}), batch 32 alone: {alone.Seconds * 1000:F2} ms, {alone.Flops / alone.Seconds / 1e9:F1} GFLOP/s");
        var stop = false;
        var streaming = IsCuda
            ? new Thread(() =>
            {
                while (!Volatile.Read(ref stop)) copies.CopyAsync(deviceBuffer, hostBuffer, CopyDirection.Load).Wait();
            }) { IsBackground = true, Name = "profile weight stream" }
            : null;
        streaming?.Start();
        List<(double Flops, double Seconds)> calls;
        try
        {
            calls = [.. new[] { 4, 16, 32 }.Select(Call)];
        }
        finally
        {
            Volatile.Write(ref stop, true);
            streaming?.Join();
        }
        var meanFlops = calls.Average(c => c.Flops);
        var meanSeconds = calls.Average(c => c.Seconds);
        var slope = calls.Sum(c => (c.Flops - meanFlops) * (c.Seconds - meanSeconds)) / calls.Sum(c => (c.Flops - meanFlops) * (c.Flops - meanFlops));
        var perCall = Math.Max(0, meanSeconds - slope * meanFlops);
        // A slope that is not positive (noise swamping the work) leaves the plain rate of the largest call.
        var rate = slope > 0 ? 1 / slope : calls[^1].Flops / calls[^1].Seconds;
        log($"CPU attention ({_kernel.Spec}){(IsCuda ? " while weights stream to the device" : "")}: " +
            string.Join(", ", calls.Select(c => $"{c.Flops / 1e9:F2} GFLOP in {c.Seconds * 1000:F2} ms")) +
            $"; {rate / 1e9:F1} GFLOP/s and {perCall * 1e6:F0} us per call");
        return (rate, perCall);
    }

    private static T RunOn<T>(CpuAttentionWorker worker, Func<T> measure)
    {
        var result = default(T);
        worker.Submit(() => result = measure()).GetAwaiter().GetResult();
        return result!;
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
            using var context = OptMath.Attend(q, k, v, mask);
            if (on.type == TorchSharp.DeviceType.CUDA) Sync();
        }, "TFLOP/s", 1e12);
    }
}
