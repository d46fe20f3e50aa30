using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ActorInfer.Model.Layers;

/// <summary>A step's queries [B, heads, T, head_dim], keys and values [B, key/value heads, T, head_dim]; disposes all three.</summary>
public sealed record QueryKeyValue(Tensor Queries, Tensor Keys, Tensor Values) : IDisposable
{
    /// <summary>
    /// The three projections from one stacked map (rows: queries, keys, values). A decoding step (one token) projects with
    /// one product and returns views of its output, not copies: every consumer takes strided heads (a copy into the cache, a
    /// batched product, a copy that needs contiguous rows makes its own). A prefill projects each part apart and returns it
    /// contiguous, as before the maps were stacked: one [B, T, q + k + v] output would double the peak of a long prompt.
    /// </summary>
    public static QueryKeyValue Project(Tensor input, LinearWeights qkv, long heads, long kvHeads, long headDim)
    {
        long batch = input.size(0), tokens = input.size(1);
        if (tokens != 1)
        {
            var queries = Part(input, qkv, 0, heads, headDim);
            Tensor? keys = null;
            try
            {
                keys = Part(input, qkv, heads * headDim, kvHeads, headDim);
                return new QueryKeyValue(queries, keys, Part(input, qkv, (heads + kvHeads) * headDim, kvHeads, headDim));
            }
            catch
            {
                queries.Dispose();
                keys?.Dispose();
                throw;
            }
        }
        using var projected = F.linear(input, qkv.Weight, qkv.Bias);
        if (heads == kvHeads)
        {
            // One token: [B, 1, 3 * heads * d] is [B, 3, heads, 1, d] as it lies.
            using var split = projected.view(batch, 3, heads, 1, headDim);
            var parts = split.unbind(1);
            return new QueryKeyValue(parts[0], parts[1], parts[2]);
        }
        var pieces = projected.split([heads * headDim, kvHeads * headDim, kvHeads * headDim], -1);
        try
        {
            return new QueryKeyValue(pieces[0].view(batch, heads, 1, headDim), pieces[1].view(batch, kvHeads, 1, headDim),
                pieces[2].view(batch, kvHeads, 1, headDim));
        }
        finally
        {
            foreach (var p in pieces) p.Dispose();
        }
    }

    /// <summary>One projection as [B, <paramref name="heads"/>, T, d], contiguous, from the stacked map's rows at <paramref name="row"/>.</summary>
    private static Tensor Part(Tensor input, LinearWeights qkv, long row, long heads, long headDim)
    {
        using var weight = qkv.Weight.narrow(0, row, heads * headDim);
        using var bias = qkv.Bias?.narrow(0, row, heads * headDim);
        using var projected = F.linear(input, weight, bias);
        using var split = projected.view(input.size(0), input.size(1), heads, headDim);
        // Every view is disposed here: a view left to the caller's scope would keep the projection's storage alive until
        // the scope ends (a whole prefill step: tens of gigabytes for a large model).
        using var transposed = split.transpose(1, 2);
        return transposed.contiguous();
    }

    public void Dispose()
    {
        Queries.Dispose();
        Keys.Dispose();
        Values.Dispose();
    }
}
