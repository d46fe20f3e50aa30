using static TorchSharp.torch;

namespace ActorInfer.Model.Layers;

/// <summary>A step's queries [B, heads, T, head_dim], keys and values [B, key/value heads, T, head_dim]; disposes all three.</summary>
public sealed record QueryKeyValue(Tensor Queries, Tensor Keys, Tensor Values) : IDisposable
{
    // Set where the keys follow the queries in one row of a projection, at the same strides (a decoding step's stacked one).
    private bool _keysFollowQueries;

    /// <summary>
    /// The queries and keys as one [B, heads + key/value heads, T, d] view where they lie so (a decoding step's stacked
    /// projection); null otherwise. The caller disposes it.
    /// </summary>
    public Tensor? QueriesAndKeys() => _keysFollowQueries
        ? Queries.as_strided([Queries.size(0), Queries.size(1) + Keys.size(1), Queries.size(2), Queries.size(3)], Queries.stride(),
            Queries.storage_offset())
        : null;

    /// <summary>
    /// The three projections, from one stacked map (rows: queries, keys, values) or three apart. With a stacked map a
    /// decoding step (one token) projects with one product and returns views of its output, not copies: every consumer
    /// takes strided heads (a copy into the cache, a batched product; a copy that needs contiguous rows makes its own). A
    /// prefill projects each part apart, as with three maps (one [B, T, q + k + v] output would double the peak of a long
    /// prompt), and on CUDA returns each as a view of its [B, T, heads, d] projection.
    /// </summary>
    public static QueryKeyValue Project(Tensor input, IReadOnlyList<LinearWeights> maps, long heads, long kvHeads, long headDim, Products? products = null)
    {
        long batch = input.size(0), tokens = input.size(1);
        if (maps.Count is not (1 or 3)) throw new ArgumentException($"Q, K and V come as one stacked map or three (got {maps.Count})", nameof(maps));
        var p = products ?? Products.Plain;
        // Batch-invariant: a decoding step projects each part apart too, so that a map has one shape in every call.
        if (tokens != 1 || maps.Count == 3 || p.IsBatchInvariant)
        {
            (LinearWeights Map, long Row) At(int part) => maps.Count == 3 ? (maps[part], 0) : (maps[0], part == 0 ? 0 : (heads + (part - 1) * kvHeads) * headDim);
            var queries = Part(input, At(0), heads, headDim, p);
            Tensor? keys = null;
            try
            {
                keys = Part(input, At(1), kvHeads, headDim, p);
                return new QueryKeyValue(queries, keys, Part(input, At(2), kvHeads, headDim, p));
            }
            catch
            {
                queries.Dispose();
                keys?.Dispose();
                throw;
            }
        }
        var qkv = maps[0];
        using var projected = Products.Fused(input, qkv.Weight, qkv.Bias);
        // One token: each sequence's row [(heads + 2 * kv heads) * d] holds its queries, keys and values one after the other,
        // each taken as [B, heads, 1, d] by its strides: one view each (unbind or split and view made two to three times
        // as many native objects).
        long row = projected.stride(0), start = projected.storage_offset();
        Tensor Taken(long first, long count) => projected.as_strided([batch, count, 1, headDim], [row, headDim, headDim, 1], start + first * headDim);
        var q = Taken(0, heads);
        Tensor? k = null;
        try
        {
            k = Taken(heads, kvHeads);
            return new QueryKeyValue(q, k, Taken(heads + kvHeads, kvHeads)) { _keysFollowQueries = true };
        }
        catch
        {
            q.Dispose();
            k?.Dispose();
            throw;
        }
    }

    /// <summary>One projection as [B, <paramref name="heads"/>, T, d] (on CUDA a view of [B, T, heads, d]), from a map's rows at a row.</summary>
    private static Tensor Part(Tensor input, (LinearWeights Map, long Row) at, long heads, long headDim, Products p)
    {
        var (map, row) = at;
        if (map.Weight.size(0) == heads * headDim) return Heads(input, map.Weight, map.Bias, heads, headDim, p);
        using var weight = map.Weight.narrow(0, row, heads * headDim);
        using var bias = map.Bias?.narrow(0, row, heads * headDim);
        return Heads(input, weight, bias, heads, headDim, p);
    }

    private static Tensor Heads(Tensor input, Tensor weight, Tensor? bias, long heads, long headDim, Products p)
    {
        using var projected = p.Linear(input, weight, bias);
        using var split = projected.view(input.size(0), input.size(1), heads, headDim);
        // On CUDA the heads are a view of the projection, [B, heads, T, d] over [B, T, heads, d]: each consumer reads
        // strided heads (the cache write; the fused attention kernels, which read by strides, the same bits, and then lay
        // their output out as [B, T, heads, d], so that the context needs no copy either). Copying them contiguous took four
        // of an OPT-6.7B prefill layer's six copies (docs/perf/h100-kernels/). On the CPU libtorch's attention rounds
        // strided queries differently, so they stay contiguous there. The other views are disposed here: one left to the
        // caller's scope would keep the storage alive until the scope ends.
        using var transposed = split.transpose(1, 2);
        return input.device_type == TorchSharp.DeviceType.CUDA ? transposed.alias() : transposed.contiguous();
    }

    public void Dispose()
    {
        Queries.Dispose();
        Keys.Dispose();
        Values.Dispose();
    }
}
