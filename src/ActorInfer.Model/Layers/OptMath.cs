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

    /// <summary>Token + position embeddings (after project_in): [B, T] ids -> [B, T, hidden].</summary>
    public static Tensor Embed(InputWeights w, Tensor tokenIds, Tensor positions, Products p)
    {
        var shape = tokenIds.Dims();
        using var flat = tokenIds.reshape(-1);
        using var tokens = w.EmbedTokens.index_select(0, flat);
        using var tokens3 = tokens.view(shape[0], shape[1], -1);
        using var projected = w.ProjectIn is null ? tokens3.alias() : p.Linear(tokens3, w.ProjectIn);
        using var flatPos = positions.reshape(-1);
        using var pos = (w.EmbedPositions ?? throw new ArgumentException("OPT needs learned position embeddings", nameof(w))).index_select(0, flatPos);
        using var pos3 = pos.view(shape[0], shape[1], -1);
        return projected.add(pos3, One);
    }

    /// <summary>LayerNorm over the last dimension: by our kernel on CUDA where it applies (<see cref="LayerNormCuda"/>), else libtorch's.</summary>
    public static Tensor Norm(Tensor x, NormWeights w) =>
        LayerNormCuda.TryNorm(x, w.Weight, w.Bias, LayerNormEps) ?? F.layer_norm(x, [x.size(-1)], w.Weight, w.Bias, LayerNormEps);

    public static Tensor Linear(Tensor x, LinearWeights w, Products p) => p.Linear(x, w.Weight, w.Bias);

    /// <summary>The input of the attention projections: the LayerNorm'd hidden state for pre-LN models.</summary>
    public static Tensor AttentionInput(Tensor hidden, AttentionWeights w, OptConfig c) =>
        c.DoLayerNormBefore ? Norm(hidden, w.Norm) : hidden.alias();

    /// <summary>Output projection, residual, and (post-LN models) the attention LayerNorm.</summary>
    public static Tensor AttentionOutput(Tensor context, Tensor residual, AttentionWeights w, OptConfig c, Products p)
    {
        var summed = Linear(context, w.Out, p);
        summed.add_(residual, One);
        if (c.DoLayerNormBefore) return summed;
        using (summed) return Norm(summed, w.Norm);
    }

    /// <summary>The FFN's first part: (LayerNorm,) fc1, ReLU.</summary>
    public static Tensor FfnUp(Tensor hidden, FfnWeights w, OptConfig c, Products p)
    {
        using var input = c.DoLayerNormBefore ? Norm(hidden, w.Norm) : hidden.alias();
        if (!p.IsBatchInvariant && w.Fc1.Bias is { } bias && ReluEpilogue.TryLinearRelu(input, w.Fc1.Weight, bias) is { } fused) return fused;
        var up = Linear(input, w.Fc1, p);
        up.relu_();
        return up;
    }

    /// <summary>The FFN's second part over <see cref="FfnUp"/>'s output: fc2, residual (, LayerNorm).</summary>
    public static Tensor FfnDown(Tensor up, Tensor hidden, FfnWeights w, OptConfig c, Products p)
    {
        var summed = Linear(up, w.Fc2, p);
        summed.add_(hidden, One);
        if (c.DoLayerNormBefore) return summed;
        using (summed) return Norm(summed, w.Norm);
    }

    /// <summary>Final LayerNorm, project_out and the LM head: [B, T, hidden] -> [B, T, vocab].</summary>
    public static Tensor Logits(Tensor hidden, OutputWeights w, Products p)
    {
        using var normed = w.FinalNorm is null ? hidden.alias() : Norm(hidden, w.FinalNorm);
        using var projected = w.ProjectOut is null ? normed.alias() : p.Linear(normed, w.ProjectOut);
        return p.Linear(projected, w.LmHead);
    }
}
