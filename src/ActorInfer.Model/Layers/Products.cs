using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ActorInfer.Model.Layers;

/// <summary>
/// How a model instance forms its linear maps. <see cref="Plain"/> gives each call to the BLAS library whole, which picks
/// its kernel (tiles, split of the inner dimension) by the call's row count: a sequence's bits then depend on how many
/// others share its batch. <see cref="BatchInvariant"/> gives the library calls of one fixed row count, the last padded
/// with zeros, so every row is formed by the same kernel whatever its batch; with <see cref="InvariantAttention"/>,
/// per-sequence prefill attention and requeued sequences that regenerate rather than resume, a greedy sequence gets the
/// same tokens in any block, under any placement (<c>batch-invariant</c>).
/// </summary>
public sealed class Products
{
    /// <summary>
    /// Rows per call in batch-invariant mode: a decoding step's (one token per sequence) and a prefill's. On an H100, 128
    /// rows cost a decoding product 2 to 3% more than its 94 rows, and 512 cost a prefill's from 7% less to 17% more than one
    /// call of 16,384
    /// (docs/perf/h100-batch-invariant/). A token is formed in the same phase in every run (a requeued sequence regenerates
    /// its tokens by decoding), so each row meets one kernel; but a block whose prompts are all one token long forms them in
    /// decoding's calls (on an H100, calls of 64 to 2,048 rows gave a row the same bits for every OPT map).
    /// </summary>
    public const int DecodeRows = 128, PrefillRows = 512;

    public static readonly Products Plain = new(false), BatchInvariant = new(true);

    private Products(bool invariant) => IsBatchInvariant = invariant;

    public bool IsBatchInvariant { get; }

    /// <summary>x W^T + b over the last dimension of <paramref name="x"/>.</summary>
    public Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null) =>
        IsBatchInvariant ? RowWise(x, rows => F.linear(rows, weight, bias)) : Fused(x, weight, bias);

    /// <summary>
    /// x W^T + b formed as PyTorch's own linear forms it (what Hugging Face's models call): a contiguous
    /// [batch, tokens, features] input is taken as [batch * tokens, features], so that the BLAS library adds the bias in the
    /// product's epilogue. TorchSharp's functional linear is libtorch's C++ frontend's, which does that for two dimensions
    /// only: over three it ran a product and then a kernel of its own for the bias, 14% of an OPT-6.7B prefill and 4% of a
    /// decoding layer on an H100 (docs/perf/h100-kernels/).
    /// </summary>
    public static Tensor Fused(Tensor x, Tensor weight, Tensor? bias = null)
    {
        if (bias is null || x.dim() != 3 || !x.is_contiguous()) return F.linear(x, weight, bias);
        using var rows = x.view(x.size(0) * x.size(1), x.size(2));
        var product = F.linear(rows, weight, bias);
        // A decoding step's product takes its token dimension in place: no second tensor (a native object) per map.
        if (x.size(1) == 1) return product.unsqueeze_(1);
        using (product) return product.view(x.size(0), x.size(1), product.size(1));
    }

    /// <summary>
    /// <paramref name="f"/> of each row of <paramref name="x"/> [batch, tokens, features] (a norm, an activation): whole, or in
    /// batch-invariant mode over calls of the products' fixed row counts, the last padded with zeros. A row then meets the
    /// same kernel in any batch: a reduction's split over threads and a vectorized function's tail (the CPU's cosine, exp
    /// and reciprocal square root round the elements at a call's tail by another routine) depend on the call's size.
    /// </summary>
    public Tensor RowWise(Tensor x, Func<Tensor, Tensor> f)
    {
        if (!IsBatchInvariant) return f(x);
        if (x.dim() != 3) throw new ArgumentException($"a batch-invariant row-wise map takes [batch, tokens, features] (got {x.dim()} dimensions)", nameof(x));
        var rowsPerCall = x.size(1) == 1 ? DecodeRows : PrefillRows;
        var features = x.size(-1);
        var rows = x.numel() / features;
        using var flat = x.reshape(rows, features);
        if (rows <= rowsPerCall)
        {
            using var input = rows == rowsPerCall ? flat.alias() : Padded(flat, rowsPerCall);
            using var whole = f(input);
            using var taken = whole.narrow(0, 0, rows);
            return taken.view(x.size(0), x.size(1), -1);
        }
        // Each call writes its rows into one output: the peak is the output and one call's rows (joining the parts would
        // hold every part and the whole again).
        Tensor? output = null;
        try
        {
            for (long first = 0; first < rows; first += rowsPerCall)
            {
                var count = Math.Min(rowsPerCall, rows - first);
                using var rowsOfCall = flat.narrow(0, first, count);
                using var input = count == rowsPerCall ? rowsOfCall.alias() : Padded(rowsOfCall, rowsPerCall);
                using var part = f(input);
                output ??= empty([(rows + rowsPerCall - 1) / rowsPerCall * rowsPerCall, part.size(-1)], part.dtype, part.device);
                using var target = output.narrow(0, first, rowsPerCall);
                target.copy_(part);
            }
            using var result = output!.narrow(0, 0, rows);
            return result.view(x.size(0), x.size(1), -1);
        }
        finally
        {
            output?.Dispose();
        }
    }

    private static Tensor Padded(Tensor flat, long rows)
    {
        var input = zeros([rows, flat.size(1)], flat.dtype, flat.device);
        using var head = input.narrow(0, 0, flat.size(0));
        head.copy_(flat);
        return input;
    }
}
