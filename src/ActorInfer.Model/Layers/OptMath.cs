using ActorInfer.Model.Config;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ActorInfer.Model.Layers;

/// <summary>
/// The arithmetic of OPT, as pure functions over weights and activations. Callers own placement: every tensor
/// passed in must be on the device where the step should run. The attention half is split into projection,
/// attention and output so that a runtime can run attention elsewhere (over a CPU-resident cache).
/// </summary>
public static class OptMath
{
    private const double LayerNormEps = 1e-5;

    // add(t) and add_(t) make a new Scalar for their alpha on every call, which nothing disposes: thousands a second
    // for the garbage collector to finalize. One shared alpha of 1 instead.
    private static readonly TorchSharp.Scalar One = TorchSharp.ScalarExtensionMethods.ToScalar(1);
    private static readonly TorchSharp.Scalar MinusInfinity = TorchSharp.ScalarExtensionMethods.ToScalar(double.NegativeInfinity);
    // 1/sqrt(head_dim) per head_dim (a model has one): made once, like the alpha above.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<long, TorchSharp.Scalar> AttentionScales = new();

    /// <summary>Token + position embeddings (after project_in): [B, T] ids -> [B, T, hidden].</summary>
    public static Tensor Embed(InputWeights w, Tensor tokenIds, Tensor positions)
    {
        var shape = tokenIds.Dims();
        using var flat = tokenIds.reshape(-1);
        using var tokens = w.EmbedTokens.index_select(0, flat);
        using var tokens3 = tokens.view(shape[0], shape[1], -1);
        using var projected = w.ProjectIn is null ? tokens3.alias() : F.linear(tokens3, w.ProjectIn);
        using var flatPos = positions.reshape(-1);
        using var pos = w.EmbedPositions.index_select(0, flatPos);
        using var pos3 = pos.view(shape[0], shape[1], -1);
        return projected.add(pos3, One);
    }

    public static Tensor Norm(Tensor x, NormWeights w) =>
        F.layer_norm(x, [x.size(-1)], w.Weight, w.Bias, LayerNormEps);

    public static Tensor Linear(Tensor x, LinearWeights w) => F.linear(x, w.Weight, w.Bias);

    /// <summary>The input of the attention projections: the LayerNorm'd hidden state for pre-LN models.</summary>
    public static Tensor AttentionInput(Tensor hidden, AttentionWeights w, OptConfig c) =>
        c.DoLayerNormBefore ? Norm(hidden, w.Norm) : hidden.alias();

    /// <summary>Q, K, V as [B, heads, T, head_dim]; Q is not pre-scaled (attention applies 1/sqrt(head_dim)).</summary>
    public static (Tensor Q, Tensor K, Tensor V) ProjectQkv(Tensor attentionInput, AttentionWeights w, OptConfig c) =>
        (Heads(attentionInput, w.Q, c), Heads(attentionInput, w.K, c), Heads(attentionInput, w.V, c));

    /// <summary>One of the Q, K, V projections, as [B, heads, T, head_dim].</summary>
    public static Tensor Heads(Tensor attentionInput, LinearWeights lw, OptConfig c)
    {
        using var projected = Linear(attentionInput, lw);
        using var split = projected.view(attentionInput.size(0), attentionInput.size(1), c.NumAttentionHeads, c.HeadDim);
        // Every view is disposed here: a view left to the caller's scope would keep the projection's storage
        // alive until the scope ends (a whole prefill step: tens of gigabytes for a large model).
        using var heads = split.transpose(1, 2);
        return heads.contiguous();
    }

    /// <summary>softmax(QK^T/sqrt(d) + mask) V, returned as [B, T, hidden].</summary>
    /// <param name="mask">True where a query may attend; null when every key may be attended (or, with <paramref name="causal"/>, every earlier one).</param>
    /// <param name="causal">Lower-triangular attention without a mask tensor, which lets CUDA pick its fastest kernels.</param>
    public static Tensor Attend(Tensor q, Tensor keys, Tensor values, Tensor? mask, bool causal = false)
    {
        if (q.device_type == TorchSharp.DeviceType.CUDA)
        {
            // Decoding (one query per sequence) by two batched products unless cuDNN's kernel is asked for: cuDNN's
            // plans every new shape on the calling thread (CudaAttentionBackends); a prefill never uses it.
            var decoding = q.size(2) == 1 && !causal;
            if (decoding && CudaAttentionBackends.Decode == DecodeAttention.Products) return AttendByProducts(q, keys, values, mask);
            CudaAttentionBackends.UseCudnn(decoding);
        }
        using var context = F.scaled_dot_product_attention(q, keys, values, mask, is_casual: causal);
        using var merged = context.transpose(1, 2);
        return merged.reshape(q.size(0), q.size(2), -1);
    }

    /// <summary>
    /// One query per sequence: softmax(q k^T / sqrt(d), masked) v as two batched matrix products around a softmax (FlexGen's
    /// own attention), [B, 1, hidden]. Nothing is planned per shape, so a new batch size or cache length costs no more than
    /// the one before; on an H100 it takes 5 to 13% longer than cuDNN's kernel at 94 to 128 sequences (docs/perf/attention/).
    /// The keys and values may be a prefix of a longer cache: only their batch and head dimensions are merged, a view.
    /// </summary>
    /// <param name="mask">[B, 1, 1, L], true where a key may be attended; null when every key may.</param>
    public static Tensor AttendByProducts(Tensor q, Tensor keys, Tensor values, Tensor? mask)
    {
        if (q.size(2) != 1) throw new ArgumentException($"attention by products takes one query per sequence (got {q.size(2)})", nameof(q));
        long b = q.size(0), h = q.size(1), d = q.size(3), length = keys.size(2);
        using var q3 = q.reshape(b * h, 1, d);
        using var k3 = keys.reshape(b * h, length, d);
        using var kt = k3.transpose(1, 2);
        using var scores = q3.bmm(kt);
        scores.mul_(AttentionScales.GetOrAdd(d, headDim => TorchSharp.ScalarExtensionMethods.ToScalar(1.0 / Math.Sqrt(headDim))));
        using var scores4 = scores.view(b, h, 1, length);
        if (mask is not null)
        {
            using var masked = mask.logical_not();
            scores4.masked_fill_(masked, MinusInfinity);
        }
        // Half-precision softmax accumulates in single precision and rounds once, as a single-precision softmax would.
        using var weights = scores.softmax(-1);
        using var v3 = values.reshape(b * h, length, d);
        using var context = weights.bmm(v3);
        return context.view(b, 1, h * d);
    }

    /// <summary>Output projection, residual, and (post-LN models) the attention LayerNorm.</summary>
    public static Tensor AttentionOutput(Tensor context, Tensor residual, AttentionWeights w, OptConfig c)
    {
        var summed = Linear(context, w.Out);
        summed.add_(residual, One);
        if (c.DoLayerNormBefore) return summed;
        using (summed) return Norm(summed, w.Norm);
    }

    /// <summary>
    /// The whole attention half with an on-device cache: writes this step's keys/values at
    /// <paramref name="cacheIndex"/> and attends over the cache up to the new entries.
    /// </summary>
    public static Tensor SelfAttention(Tensor hidden, AttentionWeights w, OptConfig c, LayerKv kv, int cacheIndex, Tensor mask)
    {
        using var input = AttentionInput(hidden, w, c);
        var (q, k, v) = ProjectQkv(input, w, c);
        using (q)
        using (k)
        using (v)
        {
            kv.Write(cacheIndex, k, v);
            var (keys, values) = kv.Prefix(cacheIndex + (int)q.size(2));
            using (keys)
            using (values)
            using (var context = Attend(q, keys, values, mask))
                return AttentionOutput(context, hidden, w, c);
        }
    }

    /// <summary>The FFN half: (LayerNorm,) fc1, ReLU, fc2, residual (, LayerNorm).</summary>
    public static Tensor Ffn(Tensor hidden, FfnWeights w, OptConfig c)
    {
        using var up = FfnUp(hidden, w, c);
        return FfnDown(up, hidden, w, c);
    }

    /// <summary>The FFN's first part: (LayerNorm,) fc1, ReLU.</summary>
    public static Tensor FfnUp(Tensor hidden, FfnWeights w, OptConfig c)
    {
        using var input = c.DoLayerNormBefore ? Norm(hidden, w.Norm) : hidden.alias();
        var up = Linear(input, w.Fc1);
        up.relu_();
        return up;
    }

    /// <summary>The FFN's second part over <see cref="FfnUp"/>'s output: fc2, residual (, LayerNorm).</summary>
    public static Tensor FfnDown(Tensor up, Tensor hidden, FfnWeights w, OptConfig c)
    {
        var summed = Linear(up, w.Fc2);
        summed.add_(hidden, One);
        if (c.DoLayerNormBefore) return summed;
        using (summed) return Norm(summed, w.Norm);
    }

    public static Tensor DecoderLayer(Tensor hidden, DecoderLayerWeights w, OptConfig c, LayerKv kv, int cacheIndex, Tensor mask)
    {
        using var attended = SelfAttention(hidden, w.Attention, c, kv, cacheIndex, mask);
        return Ffn(attended, w.Ffn, c);
    }

    /// <summary>Final LayerNorm, project_out and the LM head: [B, T, hidden] -> [B, T, vocab].</summary>
    public static Tensor Logits(Tensor hidden, OutputWeights w)
    {
        using var normed = w.FinalNorm is null ? hidden.alias() : Norm(hidden, w.FinalNorm);
        using var projected = w.ProjectOut is null ? normed.alias() : F.linear(normed, w.ProjectOut);
        return F.linear(projected, w.LmHead);
    }
}
