using static TorchSharp.torch;

namespace ActorInfer.Model.Layers;

/// <summary>
/// On a CUDA machine: whether <see cref="InvariantAttention"/>'s kernel gives the CPU's bits on seeded inputs (several
/// types, head groupings, lengths and paddings, over a prefix of a longer cache), and whether a batch-invariant product
/// gives a row the same bits alone and among others. One line per case (`actorinfer version` prints them).
/// </summary>
public static class InvariantAttentionCheck
{
    public static IEnumerable<string> Run()
    {
        (ScalarType Type, int Batch, int Heads, int KvHeads, int Dim, int Length)[] cases =
        [
            (ScalarType.Float16, 5, 8, 8, 128, 544),
            (ScalarType.Float16, 3, 8, 2, 128, 97),
            (ScalarType.Float16, 2, 4, 4, 64, 2048),
            (ScalarType.Float16, 4, 4, 1, 16, 33),
            (ScalarType.Float32, 3, 4, 4, 128, 300),
            (ScalarType.Float32, 2, 4, 2, 80, 129),
            (ScalarType.BFloat16, 3, 4, 2, 128, 200),
        ];
        foreach (var c in cases) yield return Attention(c.Type, c.Batch, c.Heads, c.KvHeads, c.Dim, c.Length);
        yield return Product();
        foreach (var (type, heads, dim) in new[] { (ScalarType.Float16, 8, 128), (ScalarType.BFloat16, 4, 128), (ScalarType.Float32, 4, 64), (ScalarType.Float16, 4, 80) })
            yield return Expansion(type, heads, dim);
        foreach (var type in new[] { ScalarType.Float16, ScalarType.BFloat16 }) yield return WeightExpansion(type);
    }

    /// <summary>A compressed weight expanded by the CUDA kernel, by libtorch's operations on CUDA and on the CPU: the same bits.</summary>
    private static string WeightExpansion(ScalarType type)
    {
        using var scope = NewDisposeScope();
        var generator = new TorchSharp.torch.Generator(11);
        var (codes, ranges) = WeightCompression.Compress((randn([192, 320], generator: generator) * 0.05).to_type(type));
        return Expanded($"compressed weight expansion {type}", (device, kernel) =>
        {
            var destination = empty([192, 320], dtype: type, device: device);
            if (!kernel) WeightCompression.DecompressByOperations(codes.to(device), ranges.to(device), destination);
            else if (!CacheCompressionCuda.TryDecompressWeight(codes.to(device), ranges.to(device), destination, CacheCompression.GroupSizeFor(320)))
                return null;
            return destination.cpu();
        });
    }

    /// <summary>A compressed cache expanded by the CUDA kernel, by libtorch's operations on CUDA and on the CPU: the same bits.</summary>
    private static string Expansion(ScalarType type, int heads, int dim)
    {
        using var scope = NewDisposeScope();
        const int batch = 3, tokens = 97;
        var generator = new TorchSharp.torch.Generator((ulong)(heads * 1000 + dim));
        var (codes, ranges) = CacheCompression.Compress((randn([batch, heads, tokens, dim], generator: generator) * 3).to_type(type));
        return Expanded($"compressed cache expansion {type}, heads {heads}, d {dim}", (device, kernel) =>
        {
            // Into a prefix of a longer working cache, as the runtime expands it.
            var work = zeros([batch, heads, tokens + 5, dim], dtype: type, device: device);
            var destination = work.narrow(2, 0, tokens);
            if (!kernel) CacheCompression.DecompressByOperations(codes.to(device), ranges.to(device), destination);
            else if (!CacheCompressionCuda.TryDecompressInto(codes.to(device), ranges.to(device), destination, CacheCompression.GroupSizeFor(heads * dim)))
                return null;
            return work.cpu();
        });
    }

    /// <param name="into">The expansion on a device, by the kernel or by the operations, brought to the CPU (null: the kernel was not used).</param>
    private static string Expanded(string what, Func<Device, bool, Tensor?> into)
    {
        var cpu = into(CPU, false)!;
        var operations = into(CUDA, false)!;
        if (into(CUDA, true) is not { } kernel) return $"{what}: the kernel was not used";
        return $"{what}: kernel and libtorch's operations on CUDA {(Same(kernel, operations) ? "identical" : "differ")}, " +
            $"kernel and the CPU {(Same(kernel, cpu) ? "identical" : "differ")}";
    }

    private static string Attention(ScalarType type, int batch, int heads, int kvHeads, int dim, int length)
    {
        using var scope = NewDisposeScope();
        var generator = new TorchSharp.torch.Generator((ulong)(length * 31 + dim));
        var q = randn([batch, heads, 1, dim], generator: generator).to_type(type);
        // A cache longer than what is attended: keys and values are a prefix view, as the runtime passes them.
        var cacheKeys = randn([batch, kvHeads, length + 7, dim], generator: generator).to_type(type);
        var cacheValues = randn([batch, kvHeads, length + 7, dim], generator: generator).to_type(type);
        var keys = cacheKeys.narrow(2, 0, length);
        var values = cacheValues.narrow(2, 0, length);
        var starts = Enumerable.Range(0, batch).Select(b => b * length / (2 * batch)).ToArray();
        var cpu = InvariantAttention.Decode(q, keys, values, starts);
        var device = CUDA;
        var startsOnDevice = tensor(starts, [batch]).to(device);
        var gpu = InvariantAttention.Decode(q.to(device), cacheKeys.to(device).narrow(2, 0, length), cacheValues.to(device).narrow(2, 0, length), starts,
            startsOnDevice).cpu();
        var what = $"batch-invariant attention {type} x {batch}, heads {heads}/{kvHeads}, d {dim}, length {length}";
        if (Same(cpu, gpu)) return $"{what}: CUDA and CPU identical";
        var differ = cpu.ne(gpu).sum().item<long>();
        var most = (cpu.to_type(ScalarType.Float32) - gpu.to_type(ScalarType.Float32)).abs().max().item<float>();
        return $"{what}: CUDA and CPU differ in {differ} of {cpu.numel()} values (at most {most:G3})";
    }

    private static string Product()
    {
        using var scope = NewDisposeScope();
        var generator = new TorchSharp.torch.Generator(7);
        var weight = (randn([4096, 4096], generator: generator) * 0.02).to_type(ScalarType.Float16).cuda();
        var bias = randn([4096], generator: generator).to_type(ScalarType.Float16).cuda();
        var row = randn([1, 1, 4096], generator: generator).to_type(ScalarType.Float16).cuda();
        var alone = Products.BatchInvariant.Linear(row, weight, bias);
        var results = new List<string>();
        foreach (var (batch, tokens, at) in new[] { (1, 1, 0), (8, 1, 5), (94, 1, 93), (300, 1, 200), (3, 700, 1), (1, 3, 2) })
        {
            var x = randn([batch, tokens, 4096], generator: generator).to_type(ScalarType.Float16).cuda();
            var (b, t) = tokens == 1 ? (at, 0) : (at % batch, at % tokens);
            x[b, t] = row[0, 0];
            var y = Products.BatchInvariant.Linear(x, weight, bias);
            var reference = tokens == 1 ? alone : Products.BatchInvariant.Linear(row.expand(1, 2, 4096).contiguous(), weight, bias).narrow(1, 0, 1);
            results.Add($"{batch}x{tokens} {(Same(y[b, t], reference[0, 0]) ? "same" : "differs")}");
        }
        return $"batch-invariant products (a row alone, then among others; prefill rows against a two-token prompt): {string.Join(", ", results)}";
    }

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.equal(b).all().item<bool>();
}
