using System.CommandLine;
using System.Text.Json;
using ActorInfer.Cli.Profiling;
using ActorInfer.Model.Config;
using ActorInfer.Runtime.CpuAttention;
using static TorchSharp.torch;

namespace ActorInfer.Cli.Commands;

/// <summary>
/// `actorinfer bench-attention`: times the ways of computing decode attention over a CPU-resident float16 cache
/// (the runtime's CPU attention) for a model's head shape, at several batch sizes and intra-op thread counts, and
/// names the fastest one that stays within float16 rounding of the exact result.
/// </summary>
public static class BenchAttentionCommand
{
    public static Command Create()
    {
        var command = new Command("bench-attention", "Time the CPU attention kernels over a float16 cache as the runtime lays it out, and name the fastest exact one.");
        var model = new Option<string>("--model") { Description = "Named size (or checkpoint folder) whose heads set the shape.", DefaultValueFactory = _ => "opt-30b" };
        var batches = new Option<int[]>("--batch") { Description = "GPU batch sizes (sequences per call).", DefaultValueFactory = _ => [24], AllowMultipleArgumentsPerToken = true };
        var promptLen = new Option<int>("--prompt-len") { Description = "Prompt length: the cache holds prompt + gen tokens.", DefaultValueFactory = _ => 512 };
        var genLen = new Option<int>("--gen-len") { Description = "Generated tokens; attention runs over the mean context, prompt + gen / 2.", DefaultValueFactory = _ => 32 };
        var threads = new Option<int[]>("--threads") { Description = "Intra-op thread counts (default: libtorch's count, and one less).", AllowMultipleArgumentsPerToken = true };
        var kinds = new Option<CpuAttentionKernelKind[]>("--kinds") { Description = "Kernels to time (default: all).", AllowMultipleArgumentsPerToken = true };
        var chunks = new Option<int[]>("--chunks") { Description = "(Sequence, head) rows per chunk; 0 is all rows at once.", DefaultValueFactory = _ => [0, 16, 64, 256], AllowMultipleArgumentsPerToken = true };
        var masked = new Option<bool>("--masked") { Description = "Left-padded sequences (an attention mask), as batches of unequal prompts have." };
        var pooled = new Option<string>("--split") { Description = "How rows are split over threads: libtorch (its intra-op threads split each operation), pool (each thread its own rows) or both.", DefaultValueFactory = _ => "both" };
        pooled.AcceptOnlyFromAmong("libtorch", "pool", "both");
        var busy = new Option<int>("--busy-threads") { Description = "Threads kept spinning meanwhile, as the thread issuing GPU work is.", DefaultValueFactory = _ => 0 };
        var repeat = new Option<int>("--repeat") { Description = "Timed calls per kernel; the median is reported.", DefaultValueFactory = _ => 10 };
        var json = new Option<bool>("--json") { Description = "Print the results as JSON." };
        foreach (var o in new Option[] { model, batches, promptLen, genLen, threads, kinds, chunks, pooled, masked, busy, repeat, json }) command.Options.Add(o);

        command.SetAction(parse =>
        {
            var config = OptConfigs.Resolve(parse.GetValue(model)!);
            var prompt = parse.GetValue(promptLen);
            var gen = parse.GetValue(genLen);
            var runs = parse.GetValue(repeat);
            if (prompt < 1 || gen < 1 || runs < 1) throw new CliException("--prompt-len, --gen-len and --repeat must be at least 1", 2);
            var defaultThreads = get_num_threads();
            var threadCounts = parse.GetValue(threads) is { Length: > 0 } t ? t : new[] { defaultThreads, defaultThreads - 1 }.Where(n => n > 0).Distinct().ToArray();
            if (threadCounts.Any(n => n < 1)) throw new CliException("--threads must be at least 1", 2);
            var kindList = parse.GetValue(kinds) is { Length: > 0 } k ? k : Enum.GetValues<CpuAttentionKernelKind>();
            var chunkList = parse.GetValue(chunks)!;
            bool[] splits = parse.GetValue(pooled) switch { "libtorch" => [false], "pool" => [true], _ => [false, true] };
            var results = new List<(AttentionShape Shape, AttentionTiming Timing)>();
            using var spinners = new Spinners(parse.GetValue(busy));
            Console.Error.WriteLine($"bench-attention: {config.Name}, float16 cache on the CPU{(MemoryTierPinned() ? " (pinned)" : "")}, {Environment.ProcessorCount} logical processors, " +
                                    $"libtorch {defaultThreads} intra-op threads by default, {parse.GetValue(busy)} busy threads; runtime kernel {CpuAttentionKernel.Default.Spec}");
            foreach (var batch in parse.GetValue(batches)!)
            {
                var shape = new AttentionShape(batch, config.NumAttentionHeads, config.HeadDim, prompt + gen, prompt + gen / 2);
                using var bench = new AttentionBench(shape, ScalarType.Float16, parse.GetValue(masked));
                foreach (var kind in kindList)
                    foreach (var chunk in chunkList)
                        foreach (var n in threadCounts)
                        foreach (var pool in splits)
                        {
                            var kernel = new CpuAttentionKernel(kind, chunk <= 0 ? int.MaxValue : chunk, pool ? n : 0);
                            var timing = bench.Time(kernel, n, runs);
                            results.Add((shape, timing));
                            Console.Error.WriteLine($"bench-attention: {shape}: {kernel.Spec} ({kernel}{(kernel.Threads > 0 ? "" : $", {n} intra-op threads")}): " +
                                                    $"{timing.Seconds * 1000:F2} ms, {timing.BytesPerSecond / 1e9:F1} GB/s of cache, {timing.FlopsPerSecond / 1e9:F1} GFLOP/s, " +
                                                    $"max error {timing.MaxUlps:F2} ulp{(timing.Exact ? "" : " (not exact)")}");
                        }
            }
            var best = results.Where(r => r.Timing.Exact).GroupBy(r => r.Shape)
                .Select(g => g.OrderBy(r => r.Timing.Seconds).First()).ToList();
            if (parse.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(new
                {
                    model = config.Name,
                    logical_processors = Environment.ProcessorCount,
                    default_threads = defaultThreads,
                    busy_threads = parse.GetValue(busy),
                    runtime_kernel = CpuAttentionKernel.Default.Spec,
                    results = results.Select(r => new
                    {
                        batch = r.Shape.Batch, heads = r.Shape.Heads, head_dim = r.Shape.HeadDim, context = r.Shape.Context,
                        kernel = r.Timing.Kernel.Spec, threads = r.Timing.Threads, pool = r.Timing.Kernel.Threads > 0,
                        ms = r.Timing.Seconds * 1000, cache_gb_per_s = r.Timing.BytesPerSecond / 1e9, gflops = r.Timing.FlopsPerSecond / 1e9,
                        max_ulps = r.Timing.MaxUlps, exact = r.Timing.Exact,
                    }),
                    fastest_exact = best.Select(r => new { batch = r.Shape.Batch, kernel = r.Timing.Kernel.Spec, threads = r.Timing.Threads, pool = r.Timing.Kernel.Threads > 0, ms = r.Timing.Seconds * 1000 }),
                }, new JsonSerializerOptions { WriteIndented = true }));
            }
            else
            {
                foreach (var (shape, timing) in best)
                    Console.WriteLine($"fastest exact at batch {shape.Batch}: {timing.Kernel.Spec} ({timing.Kernel}), {timing.Threads} threads, " +
                                      $"{timing.Seconds * 1000:F2} ms ({timing.BytesPerSecond / 1e9:F1} GB/s of cache)");
            }
            return 0;
        });
        return command;
    }

    private static bool MemoryTierPinned() => ActorInfer.Runtime.Tiers.MemoryTier.ForCpu(0).Pinned;

    /// <summary>Threads that spin until disposed, standing in for the host thread that issues GPU work meanwhile.</summary>
    private sealed class Spinners : IDisposable
    {
        private readonly List<Thread> _threads = [];
        private volatile bool _stop;

        public Spinners(int count)
        {
            for (var i = 0; i < count; i++)
            {
                var thread = new Thread(() => { while (!_stop) Thread.SpinWait(1000); }) { IsBackground = true, Name = "bench-attention spinner" };
                thread.Start();
                _threads.Add(thread);
            }
        }

        public void Dispose()
        {
            _stop = true;
            foreach (var t in _threads) t.Join();
        }
    }
}
