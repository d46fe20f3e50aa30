using static TorchSharp.torch;

namespace ActorInfer.Model.Layers;

/// <summary>
/// On a CUDA machine: whether <see cref="DecodeAttentionCuda"/>'s kernel agrees with attention formed in single precision from
/// the same inputs, over seeded cases (both types, head groupings and sizes, lengths within one chunk and over many, padding
/// masks, a prefix of a longer cache, no mask), and <see cref="LayerNormCuda"/>'s with libtorch's LayerNorm in single
/// precision. Agreement: every value within two units in the last place of its type at the reference's magnitude (at least
/// 1). One line per case (`actorinfer version` prints them).
/// </summary>
public static class FusedKernelsCheck
{
    public static IEnumerable<string> Run()
    {
        (ScalarType Type, int Batch, int Heads, int KvHeads, int Dim, int Length, bool Padded)[] cases =
        [
            (ScalarType.Float16, 32, 32, 32, 128, 544, true),
            (ScalarType.Float16, 5, 8, 8, 128, 100, false),
            (ScalarType.Float16, 3, 8, 2, 128, 97, true),
            (ScalarType.Float16, 2, 4, 4, 64, 2048, true),
            (ScalarType.Float16, 4, 4, 1, 16, 33, true),
            (ScalarType.Float16, 3, 16, 2, 128, 1000, true),
            (ScalarType.Float16, 2, 4, 4, 256, 300, false),
            (ScalarType.Float16, 2, 8, 4, 32, 129, true),
            (ScalarType.BFloat16, 3, 4, 2, 128, 200, true),
            (ScalarType.BFloat16, 4, 8, 8, 64, 640, false),
        ];
        foreach (var c in cases) yield return Case(c.Type, c.Batch, c.Heads, c.KvHeads, c.Dim, c.Length, c.Padded);
        foreach (var (type, rows, width) in new[] { (ScalarType.Float16, 32, 4096), (ScalarType.Float16, 3, 7168), (ScalarType.Float16, 1000, 2048),
            (ScalarType.BFloat16, 7, 12288), (ScalarType.Float16, 5, 64), (ScalarType.BFloat16, 2, 16384) })
            yield return Norm(type, rows, width);
    }

    private static string Norm(ScalarType type, int rows, int width)
    {
        using var scope = NewDisposeScope();
        var what = $"fused layer norm {type}, {rows} rows of {width}";
        var generator = new TorchSharp.torch.Generator((ulong)(rows * 17 + width));
        var x = (randn([rows, 1, width], generator: generator) * 3 + 1).to_type(type).cuda();
        var weight = (randn([width], generator: generator) * 0.5 + 1).to_type(type).cuda();
        var bias = (randn([width], generator: generator) * 0.1).to_type(type).cuda();
        if (LayerNormCuda.TryNorm(x, weight, bias, 1e-5) is not { } fused) return $"{what}: the kernel was not used";
        var reference = TorchSharp.torch.nn.functional.layer_norm(x.to_type(ScalarType.Float32), [width], weight.to_type(ScalarType.Float32),
            bias.to_type(ScalarType.Float32), 1e-5).cpu();
        return Agreement(what, fused, reference, type);
    }

    private static string Agreement(string what, Tensor fused, Tensor reference, ScalarType type)
    {
        var got = fused.to_type(ScalarType.Float32).cpu();
        var ulp = type == ScalarType.BFloat16 ? Math.Pow(2, -7) : Math.Pow(2, -10);
        var bound = reference.abs().clamp_min(1.0) * (2 * ulp);
        var error = (got - reference).abs();
        var outside = error.gt(bound).sum().item<long>();
        var most = error.max().item<float>();
        return outside == 0
            ? $"{what}: agrees (at most {most:G3} from single precision)"
            : $"{what}: DIFFERS in {outside} of {got.numel()} values (at most {most:G3} from single precision)";
    }

    private static string Case(ScalarType type, int batch, int heads, int kvHeads, int dim, int length, bool padded)
    {
        using var scope = NewDisposeScope();
        var what = $"fused decoding attention {type} x {batch}, heads {heads}/{kvHeads}, d {dim}, length {length}{(padded ? ", padded" : "")}";
        var generator = new TorchSharp.torch.Generator((ulong)(length * 131 + dim * 7 + heads));
        var q = (randn([batch, heads, 1, dim], generator: generator) * 2).to_type(type).cuda();
        // A cache longer than what is attended: keys and values are a prefix view, as the runtime passes them.
        var capacity = length + 200;
        var cacheKeys = randn([batch, kvHeads, capacity, dim], generator: generator).to_type(type).cuda();
        var cacheValues = randn([batch, kvHeads, capacity, dim], generator: generator).to_type(type).cuda();
        var keys = cacheKeys.narrow(2, 0, length);
        var values = cacheValues.narrow(2, 0, length);
        Tensor? mask = null, wholeMask = null;
        if (padded)
        {
            var starts = tensor(Enumerable.Range(0, batch).Select(b => (long)(b * length / (2 * batch))).ToArray(), [batch, 1, 1, 1]).cuda();
            mask = arange(length, dtype: ScalarType.Int64, device: CUDA).ge(starts);
            wholeMask = arange(capacity, dtype: ScalarType.Int64, device: CUDA).ge(starts);
        }
        if (DecodeAttentionCuda.TryDecode(q, keys, values, mask) is not { } fused) return $"{what}: the kernel was not used";
        // The launch a captured layer makes: over the whole cache, the filled length read on the device. Its context must be
        // the same, value for value (the chunks past the length are empty).
        var last = tensor(new long[] { length - 1 }).cuda();
        var overCapacity = DecodeAttentionCuda.TryDecode(q, cacheKeys, cacheValues, wholeMask, last);
        var same = overCapacity is null ? "the launch over the capacity was not made"
            : fused.eq(overCapacity).all().item<bool>() ? "over the capacity with the length on the device: the same values"
            : "over the capacity with the length on the device: DIFFERS";
        // The engine's decoding launch: the step's key and value (index length - 1) not yet in the cache, taken from rows of a
        // projection-like buffer and written into the cache by the kernel as it attends.
        var rowKeys = cacheKeys.narrow(2, length - 1, 1).clone();
        var rowValues = cacheValues.narrow(2, length - 1, 1).clone();
        var staleKeys = cacheKeys.clone();
        var staleValues = cacheValues.clone();
        staleKeys.narrow(2, length - 1, 1).fill_(1000);
        staleValues.narrow(2, length - 1, 1).fill_(-1000);
        var rowsWritten = DecodeAttentionCuda.TryDecode(q, staleKeys.narrow(2, 0, length), staleValues.narrow(2, 0, length), mask, null,
            rowKeys, rowValues, length - 1);
        var written = rowsWritten is null ? "the launch with the step's row was not made"
            : rowsWritten.eq(fused).all().item<bool>() && staleKeys.eq(cacheKeys).all().item<bool>() && staleValues.eq(cacheValues).all().item<bool>()
                ? "with the step's row written by the kernel: the same values, the row in the cache"
                : "with the step's row written by the kernel: DIFFERS";
        return $"{Agreement(what, fused, Reference(q, keys, values, mask), type)}; {same}; {written}";
    }

    /// <summary>Attention in single precision on the device from the same inputs, [B, 1, heads * d] on the CPU.</summary>
    private static Tensor Reference(Tensor q, Tensor keys, Tensor values, Tensor? mask)
    {
        long b = q.size(0), h = q.size(1), d = q.size(3);
        var k = AttentionMath.RepeatKeyValueHeads(keys, h).to_type(ScalarType.Float32);
        var v = AttentionMath.RepeatKeyValueHeads(values, h).to_type(ScalarType.Float32);
        var scores = q.to_type(ScalarType.Float32).matmul(k.transpose(2, 3)) / Math.Sqrt(d);
        if (mask is not null) scores = scores.masked_fill(mask.logical_not(), double.NegativeInfinity);
        return scores.softmax(-1).matmul(v).reshape(b, 1, h * d).cpu();
    }
}
