using System.Collections.Concurrent;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ActorInfer.Model.Layers;

/// <summary>
/// Scaled dot-product attention over a cache, shared by every architecture. Keys and values may have fewer heads
/// than the queries (grouped-query attention): query head h reads key/value head h / (query heads / key heads),
/// as Hugging Face's repeat_kv arranges them.
/// </summary>
public static class AttentionMath
{
    private static readonly Scalar MinusInfinity = ScalarExtensionMethods.ToScalar(double.NegativeInfinity);
    // 1/sqrt(head_dim) per head_dim (a model has one): made once, not per call.
    private static readonly ConcurrentDictionary<long, Scalar> AttentionScales = new();

    /// <summary>softmax(QK^T/sqrt(d) + mask) V, returned as [B, T, heads * head_dim].</summary>
    /// <param name="mask">True where a query may attend; null when every key may be attended (or, with <paramref name="causal"/>, every earlier one).</param>
    /// <param name="causal">Lower-triangular attention without a mask tensor, which lets CUDA pick its fastest kernels.</param>
    /// <param name="decode">How a decoding step (one query per sequence) attends on CUDA.</param>
    /// <param name="excluded">The mask's negation, where a caller keeps it (one per step, not one per layer), for the products.</param>
    /// <param name="last">
    /// For our fused decoding kernel: the cache's last filled index, on the device; the keys past it are not read (see
    /// <see cref="DecodeAttentionCuda.TryDecode"/>). Other paths attend every key the mask allows.
    /// </param>
    /// <param name="newKeys">
    /// A decoding step's keys [B, key/value heads, 1, d] with <paramref name="newValues"/>, not yet in the cache: written there at
    /// <paramref name="newIndex"/> (of <paramref name="keys"/>, a prefix of the cache) by our fused kernel as it attends, or here
    /// before any other path attends (and with ACTORINFER_DECODE_WRITE=separate).
    /// </param>
    public static Tensor Attend(Tensor q, Tensor keys, Tensor values, Tensor? mask, bool causal = false, DecodeAttention decode = DecodeAttention.Products,
        Tensor? excluded = null, Tensor? last = null, Tensor? newKeys = null, Tensor? newValues = null, int newIndex = -1)
    {
        if (newKeys is not null && newValues is not null)
        {
            if (q.device_type == DeviceType.CUDA && q.size(2) == 1 && !causal && decode == DecodeAttention.Fused && DecodeAttentionCuda.WritesRows
                && DecodeAttentionCuda.TryDecode(q, keys, values, mask, last, newKeys, newValues, newIndex) is { } written) return written;
            using var keyRow = keys.narrow(2, newIndex, 1);
            using var valueRow = values.narrow(2, newIndex, 1);
            keyRow.copy_(newKeys);
            valueRow.copy_(newValues);
        }
        if (q.device_type == DeviceType.CUDA)
        {
            // Decoding (one query per sequence) by two batched products unless a fused kernel is asked for: cuDNN's
            // plans every new shape on the calling thread (CudaAttentionBackends); a prefill never uses it. Without
            // cuDNN, a masked call takes the memory-efficient kernel.
            var decoding = q.size(2) == 1 && !causal;
            if (decoding && decode == DecodeAttention.Fused && DecodeAttentionCuda.TryDecode(q, keys, values, mask, last) is { } fused) return fused;
            if (decoding && decode is DecodeAttention.Products or DecodeAttention.Fused) return AttendByProducts(q, keys, values, mask, excluded);
            CudaAttentionBackends.UseCudnn(decoding && decode == DecodeAttention.Cudnn);
        }
        var grouped = keys.size(1) != q.size(1);
        var expandedKeys = grouped ? RepeatKeyValueHeads(keys, q.size(1)) : keys;
        var expandedValues = grouped ? RepeatKeyValueHeads(values, q.size(1)) : values;
        try
        {
            using var context = F.scaled_dot_product_attention(q, expandedKeys, expandedValues, mask, is_casual: causal);
            // One query per sequence: [B, heads, 1, d] lies as [B, 1, heads * d] already.
            if (q.size(2) == 1 && context.is_contiguous()) return context.view(q.size(0), 1, -1);
            using var merged = context.transpose(1, 2);
            return merged.reshape(q.size(0), q.size(2), -1);
        }
        finally
        {
            if (grouped)
            {
                expandedKeys.Dispose();
                expandedValues.Dispose();
            }
        }
    }

    /// <summary>
    /// One query per sequence: softmax(q k^T / sqrt(d), masked) v as two batched matrix products around a softmax (FlexGen's
    /// own attention), [B, 1, hidden]. Nothing is planned per shape, so a new batch size or cache length costs no more than
    /// the one before; on an H100 it takes 5 to 13% longer than cuDNN's kernel at 94 to 128 sequences (docs/perf/attention/).
    /// The keys and values may be a prefix of a longer cache: only their batch and head dimensions are merged, a view.
    /// </summary>
    /// <param name="mask">[B, 1, 1, L], true where a key may be attended; null when every key may.</param>
    /// <param name="excluded">The negation of <paramref name="mask"/>, when the caller has it already.</param>
    public static Tensor AttendByProducts(Tensor q, Tensor keys, Tensor values, Tensor? mask, Tensor? excluded = null)
    {
        if (q.size(2) != 1) throw new ArgumentException($"attention by products takes one query per sequence (got {q.size(2)})", nameof(q));
        // Each key/value head serves a group of consecutive query heads: the group becomes the product's row dimension.
        long b = q.size(0), h = q.size(1), d = q.size(3), length = keys.size(2), kvHeads = keys.size(1);
        if (h % kvHeads != 0) throw new ArgumentException($"{h} query heads cannot share {kvHeads} key/value heads", nameof(keys));
        var group = h / kvHeads;
        using var q3 = q.reshape(b * kvHeads, group, d);
        using var k3 = keys.reshape(b * kvHeads, length, d);
        using var kt = k3.transpose(1, 2);
        using var scores = q3.bmm(kt);
        scores.mul_(AttentionScales.GetOrAdd(d, headDim => ScalarExtensionMethods.ToScalar(1.0 / Math.Sqrt(headDim))));
        using var scores4 = scores.view(b, kvHeads, group, length);
        if (excluded is not null) scores4.masked_fill_(excluded, MinusInfinity);
        else if (mask is not null)
        {
            using var masked = mask.logical_not();
            scores4.masked_fill_(masked, MinusInfinity);
        }
        // Half-precision softmax accumulates in single precision and rounds once, as a single-precision softmax would.
        using var weights = scores.softmax(-1);
        using var v3 = values.reshape(b * kvHeads, length, d);
        using var context = weights.bmm(v3);
        return context.view(b, 1, h * d);
    }

    /// <summary>
    /// Causal attention over each prompt alone, [B, S, heads * d]: sequence b's queries, keys and values from
    /// <paramref name="starts"/>[b] (its padding) on, so that its bits do not depend on its padding or on the others in the
    /// batch. Sequences of equal padding that lie together go in one call (the fused kernel forms each sequence apart);
    /// the padding's rows are zeros.
    /// </summary>
    public static Tensor AttendPrompts(Tensor q, Tensor keys, Tensor values, IReadOnlyList<int> starts)
    {
        long b = q.size(0), s = q.size(2);
        if (starts.Count != b) throw new ArgumentException($"{starts.Count} starts for {b} sequences", nameof(starts));
        if (starts.All(start => start == 0)) return Attend(q, keys, values, null, causal: true);
        var context = zeros([b, s, q.size(1) * q.size(3)], q.dtype, q.device);
        for (var first = 0; first < b;)
        {
            var start = starts[first];
            if (start < 0 || start >= s) throw new ArgumentException($"sequence {first} starts at {start}, outside its {s} positions", nameof(starts));
            var end = first + 1;
            while (end < b && starts[end] == start) end++;
            long count = end - first, length = s - start;
            using var qb = q.narrow(0, first, count);
            using var kb = keys.narrow(0, first, count);
            using var vb = values.narrow(0, first, count);
            using var qs = qb.narrow(2, start, length);
            using var ks = kb.narrow(2, start, length);
            using var vs = vb.narrow(2, start, length);
            using var part = Attend(qs, ks, vs, null, causal: true);
            using var rows = context.narrow(0, first, count);
            using var target = rows.narrow(1, start, length);
            target.copy_(part);
            first = end;
        }
        return context;
    }

    /// <summary>Keys or values [B, kv heads, L, d] with each head repeated for its group of query heads; an alias when the counts agree.</summary>
    public static Tensor RepeatKeyValueHeads(Tensor keysOrValues, long queryHeads)
    {
        var kvHeads = keysOrValues.size(1);
        if (kvHeads == queryHeads) return keysOrValues.alias();
        if (queryHeads % kvHeads != 0)
            throw new ArgumentException($"{queryHeads} query heads cannot share {kvHeads} key/value heads", nameof(queryHeads));
        return keysOrValues.repeat_interleave(queryHeads / kvHeads, dim: 1);
    }
}
