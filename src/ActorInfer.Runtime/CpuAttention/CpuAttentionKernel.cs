using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ActorInfer.Runtime.CpuAttention;

/// <summary>The ways decode attention over a CPU-resident cache can be computed; `actorinfer bench-attention` times them.</summary>
public enum CpuAttentionKernelKind
{
    /// <summary>libtorch's scaled_dot_product_attention in the cache's dtype.</summary>
    Sdpa,
    /// <summary>Keys and values converted to float32 in a scratch buffer chunk by chunk, then scaled_dot_product_attention in float32.</summary>
    Float32,
    /// <summary>As <see cref="Float32"/>, with the scores and the weighted values as batched matrix products and an explicit softmax.</summary>
    Float32Matmul,
    /// <summary>Batched matrix products in the cache's dtype (the scores rounded to it before a float32 softmax).</summary>
    Matmul,
}

/// <summary>
/// Decode attention for one new query per sequence over a CPU cache prefix: softmax(q k^T / sqrt(d) + mask) v.
/// Every kind computes the same function; they differ in how they use the CPU's caches and vector units. The
/// (sequence, head) pairs are independent, so they are taken as rows of one batch of heads and worked through in
/// chunks of <see cref="ChunkRows"/> rows, which bounds the float32 scratch and keeps a chunk in the CPU's caches.
/// With <see cref="Threads"/> above zero the rows are split over that many threads of a <see cref="TorchThreadPool"/>,
/// each with one intra-op thread; with zero, libtorch's intra-op threads split each operation.
/// </summary>
public sealed record CpuAttentionKernel(CpuAttentionKernelKind Kind, int ChunkRows = int.MaxValue, int Threads = 0)
{
    /// <summary>
    /// The kernel the runtime uses unless told otherwise: float32 matrix products over chunks of 16 rows, the rows
    /// split over all logical processors but one (left to the thread that issues GPU work). On the development
    /// machine (2 cores, shared) it was the fastest exact kernel of `actorinfer bench-attention` and the least
    /// disturbed by other load; libtorch's float16 SDPA was 5 to 10 times slower there and 1.5 float16 steps off.
    /// `scripts/gpu/bench-30b-auto.sh` times them all on the GPU machine.
    /// </summary>
    public static CpuAttentionKernel Default { get; } = new(CpuAttentionKernelKind.Float32Matmul, 16, Math.Max(1, Environment.ProcessorCount - 1));

    /// <summary>Whether this kind works in a float32 scratch buffer.</summary>
    public bool NeedsScratch => Kind is CpuAttentionKernelKind.Float32 or CpuAttentionKernelKind.Float32Matmul;

    private int Workers => Math.Max(1, Threads);

    /// <summary>
    /// The float32 scratch this kernel needs for <paramref name="rows"/> (sequence, head) pairs over caches of
    /// <paramref name="capacity"/> entries of <paramref name="headDim"/>: keys and values of one chunk per thread.
    /// Null when it needs none.
    /// </summary>
    public long[]? ScratchShape(long rows, long capacity, long headDim) =>
        NeedsScratch ? [Workers, 2, Math.Min((rows + Workers - 1) / Workers, ChunkRows), capacity, headDim] : null;

    public override string ToString() =>
        Kind + (ChunkRows == int.MaxValue ? "" : $", chunks of {ChunkRows} rows") + (Threads > 0 ? $", {Threads} threads of one" : "");

    /// <summary>Parses "Kind[:chunk rows[:threads]]", as `bench-attention` prints kernels for the command line.</summary>
    public static CpuAttentionKernel Parse(string text)
    {
        var parts = text.Split(':');
        if (parts.Length > 3 || !Enum.TryParse<CpuAttentionKernelKind>(parts[0], ignoreCase: true, out var kind))
            throw new FormatException($"'{text}' is not a CPU attention kernel: use KIND[:CHUNK_ROWS[:THREADS]] with KIND one of {string.Join(", ", Enum.GetNames<CpuAttentionKernelKind>())}");
        int Number(int at, int absent)
        {
            if (parts.Length <= at) return absent;
            if (!int.TryParse(parts[at], out var n) || n < 0) throw new FormatException($"'{text}': '{parts[at]}' is not a count of rows or threads");
            return n;
        }
        var chunk = Number(1, 0);
        return new CpuAttentionKernel(kind, chunk == 0 ? int.MaxValue : chunk, Number(2, 0));
    }

    /// <summary>The command-line form, "Kind[:chunk rows[:threads]]".</summary>
    public string Spec => $"{Kind}:{(ChunkRows == int.MaxValue ? 0 : ChunkRows)}:{Threads}";

    /// <summary>
    /// Writes the attention context of <paramref name="q"/> [B, heads, 1, head_dim] over <paramref name="keys"/> and
    /// <paramref name="values"/> [B, heads, T, head_dim] (views of the cache: any stride between tokens, sequences
    /// and heads) into <paramref name="output"/> [B, 1, heads · head_dim], in its dtype.
    /// </summary>
    /// <param name="mask">True where a query may attend, [B, 1, 1, T]; null when every key may be attended.</param>
    /// <param name="scratch">Float32 of <see cref="ScratchShape"/> (or larger in its last three dimensions) when <see cref="NeedsScratch"/>.</param>
    /// <param name="pool">A pool of <see cref="Threads"/> threads when <see cref="Threads"/> is above zero.</param>
    public void Attend(Tensor q, Tensor keys, Tensor values, Tensor? mask, Tensor output, Tensor? scratch = null, TorchThreadPool? pool = null)
    {
        using var scope = NewDisposeScope();
        long batch = q.shape[0], heads = q.shape[1], length = keys.shape[2], dim = q.shape[3];
        var rows = batch * heads;
        // [1, B·heads, tokens, head_dim]: every (sequence, head) pair one head of a single batch.
        var allQ = q.reshape(1, rows, 1, dim);
        var allKeys = keys.view(1, rows, length, dim);
        var allValues = values.view(1, rows, length, dim);
        var allMask = mask?.expand(batch, heads, 1, length).reshape(1, rows, 1, length);
        var allOutput = output.view(1, rows, 1, dim);
        if (NeedsScratch)
        {
            var needed = ScratchShape(rows, length, dim)!;
            if (scratch is null || scratch.dtype != ScalarType.Float32 || scratch.shape.Length != 5 || scratch.shape[0] < needed[0] ||
                scratch.shape[2] < needed[2] || scratch.shape[3] < length || scratch.shape[4] != dim)
                throw new ArgumentException($"{this} needs a float32 scratch of at least [{string.Join(", ", needed)}]");
            allQ = allQ.to_type(ScalarType.Float32);
        }
        if (Threads == 0)
        {
            Rows(allQ, allKeys, allValues, allMask, allOutput, 0, rows, scratch?[0]);
            return;
        }
        if (pool is null || pool.Count != Threads) throw new ArgumentException($"{this} needs a pool of {Threads} threads");
        var share = (rows + Threads - 1) / Threads;
        pool.Run(worker =>
        {
            var start = Math.Min(rows, worker * share);
            Rows(allQ, allKeys, allValues, allMask, allOutput, start, Math.Min(rows, start + share) - start, scratch?[worker]);
        });
    }

    private void Rows(Tensor q, Tensor keys, Tensor values, Tensor? mask, Tensor output, long first, long count, Tensor? scratch)
    {
        var length = keys.shape[2];
        var chunk = Math.Min(Math.Max(count, 1), ChunkRows);
        for (var start = first; start < first + count; start += chunk)
        {
            using var scope = NewDisposeScope();
            var n = Math.Min(chunk, first + count - start);
            var chunkQ = q.narrow(1, start, n);
            var chunkKeys = keys.narrow(1, start, n);
            var chunkValues = values.narrow(1, start, n);
            var chunkMask = mask?.narrow(1, start, n);
            if (scratch is not null)
            {
                var k32 = scratch[0].narrow(0, 0, n).narrow(1, 0, length).unsqueeze(0);
                var v32 = scratch[1].narrow(0, 0, n).narrow(1, 0, length).unsqueeze(0);
                k32.copy_(chunkKeys);
                v32.copy_(chunkValues);
                (chunkKeys, chunkValues) = (k32, v32);
            }
            var context = Kind is CpuAttentionKernelKind.Sdpa or CpuAttentionKernelKind.Float32
                ? F.scaled_dot_product_attention(chunkQ, chunkKeys, chunkValues, chunkMask)
                : Products(chunkQ, chunkKeys, chunkValues, chunkMask);
            output.narrow(1, start, n).copy_(context);
        }
    }

    private static Tensor Products(Tensor q, Tensor keys, Tensor values, Tensor? mask)
    {
        var scores = q.matmul(keys.transpose(2, 3));
        scores.mul_(1.0 / Math.Sqrt(q.shape[3]));
        if (mask is not null) scores.masked_fill_(mask.logical_not(), double.NegativeInfinity);
        var probabilities = scores.softmax(-1, ScalarType.Float32).to_type(values.dtype);
        return probabilities.matmul(values);
    }
}
