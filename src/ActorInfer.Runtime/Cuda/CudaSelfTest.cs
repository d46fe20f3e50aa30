using ActorInfer.Runtime.Copies;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Cuda;

/// <summary>Checks, on a CUDA machine, that the runtime's own CUDA calls work: memory query and an async round trip.</summary>
public static class CudaSelfTest
{
    public static IEnumerable<string> Run()
    {
        var (free, total) = CudaRuntime.MemoryInfo();
        yield return $"cuda memory: {free / (1L << 20)} MiB free of {total / (1L << 20)} MiB";
        using var scope = NewDisposeScope();
        using var engine = new CudaCopyEngine();
        var host = arange(0, 1 << 20, dtype: ScalarType.Float16).pin_memory();
        var device = empty_like(host, device: CUDA);
        var back = empty_like(host).pin_memory();
        var load = engine.CopyAsync(device, host, CopyDirection.Load);
        engine.BeforeCompute(load);
        device.mul_(2);
        var store = engine.CopyAfter(engine.AfterCompute(), back, device, CopyDirection.Store);
        store.Wait();
        var ok = back.eq(host * 2).all().item<bool>();
        yield return $"cuda copy engine round trip: {(ok ? "ok" : "WRONG")}";
        var bytes = 1L << 30;
        var big = empty(bytes / 2, dtype: ScalarType.Float16).pin_memory();
        var target = empty_like(big, device: CUDA);
        engine.CopyAsync(target, big, CopyDirection.Load).Wait();
        var watch = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; i < 4; i++) engine.CopyAsync(target, big, CopyDirection.Load).Wait();
        yield return $"pinned host->device: {4.0 * bytes / watch.Elapsed.TotalSeconds / 1e9:F1} GB/s";
        yield return Graph();
    }

    /// <summary>A CUDA graph captured, its input refilled in place and replayed: what decoding's graphs rely on.</summary>
    private static string Graph()
    {
        using var scope = NewDisposeScope();
        var stream = CudaRuntime.CreateStream();
        try
        {
            var input = zeros(1 << 16, device: CUDA);
            var output = empty_like(input);
            using var graph = CudaGraph.Capture(() =>
            {
                using var doubled = input.mul(2);
                output.copy_(doubled.add_(1));
            }, stream, default);
            input.fill_(3);
            graph.Replay();
            var first = output.eq(7).all().item<bool>();
            input.fill_(-1);
            graph.Replay();
            var second = output.eq(-1).all().item<bool>();
            return $"cuda graph capture and replay: {(first && second ? "ok" : "WRONG")}";
        }
        finally
        {
            CudaRuntime.DestroyStream(stream);
        }
    }
}
