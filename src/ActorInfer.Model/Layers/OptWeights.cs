using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using TorchSharp;
using static TorchSharp.torch;
using S = ActorInfer.Model.Config.OptWeightNames.LayerSuffix;

namespace ActorInfer.Model.Layers;

/// <summary>LayerNorm parameters; both null when the config has no elementwise affine.</summary>
public sealed record NormWeights(Tensor? Weight, Tensor? Bias);

/// <summary>A linear map stored as checkpoints store it: weight [out, in], optional bias [out].</summary>
public sealed record LinearWeights(Tensor Weight, Tensor? Bias);

/// <summary>
/// FlexGen's "SelfAttention" half of a decoder layer. <paramref name="Qkv"/> holds the Q, K and V projections either as
/// one map, their rows stacked in that order (a decoding step then projects with one product), or as three apart.
/// </summary>
public sealed record AttentionWeights(NormWeights Norm, IReadOnlyList<LinearWeights> Qkv, LinearWeights Out)
{
    public IEnumerable<Tensor> Tensors() => Enumerate(Norm, [.. Qkv, Out]);

    internal static IEnumerable<Tensor> Enumerate(NormWeights norm, params LinearWeights[] linears)
    {
        if (norm.Weight is not null) yield return norm.Weight;
        if (norm.Bias is not null) yield return norm.Bias;
        foreach (var l in linears)
        {
            yield return l.Weight;
            if (l.Bias is not null) yield return l.Bias;
        }
    }
}

/// <summary>FlexGen's "MLP" half of a decoder layer; <paramref name="Gate"/> only in gated MLPs (LLaMA's up and down are Fc1 and Fc2).</summary>
public sealed record FfnWeights(NormWeights Norm, LinearWeights Fc1, LinearWeights Fc2, LinearWeights? Gate = null)
{
    public IEnumerable<Tensor> Tensors() => Gate is null
        ? AttentionWeights.Enumerate(Norm, Fc1, Fc2)
        : AttentionWeights.Enumerate(Norm, Gate, Fc1, Fc2);
}

public sealed record DecoderLayerWeights(AttentionWeights Attention, FfnWeights Ffn) : IDisposable
{
    public IEnumerable<Tensor> Tensors() => Attention.Tensors().Concat(Ffn.Tensors());

    public void Dispose()
    {
        foreach (var t in Tensors()) t.Dispose();
    }
}

/// <summary>Token embeddings, learned position embeddings (OPT; null under rotary positions), optional project_in.</summary>
public sealed record InputWeights(Tensor EmbedTokens, Tensor? EmbedPositions, Tensor? ProjectIn) : IDisposable
{
    public IEnumerable<Tensor> Tensors()
    {
        yield return EmbedTokens;
        if (EmbedPositions is not null) yield return EmbedPositions;
        if (ProjectIn is not null) yield return ProjectIn;
    }

    public void Dispose()
    {
        EmbedTokens.Dispose();
        EmbedPositions?.Dispose();
        ProjectIn?.Dispose();
    }
}

/// <summary>Final LayerNorm (pre-LN models), optional project_out, and the LM head (tied: the token embeddings).</summary>
public sealed record OutputWeights(NormWeights? FinalNorm, Tensor? ProjectOut, Tensor LmHead, bool OwnsLmHead) : IDisposable
{
    /// <summary>The tensors these weights own (a tied head is the input's).</summary>
    public IEnumerable<Tensor> Tensors()
    {
        if (FinalNorm?.Weight is not null) yield return FinalNorm.Weight;
        if (FinalNorm?.Bias is not null) yield return FinalNorm.Bias;
        if (ProjectOut is not null) yield return ProjectOut;
        if (OwnsLmHead) yield return LmHead;
    }

    public void Dispose()
    {
        FinalNorm?.Weight?.Dispose();
        FinalNorm?.Bias?.Dispose();
        ProjectOut?.Dispose();
        if (OwnsLmHead) LmHead.Dispose();
    }
}

/// <summary>Reads the weights of one part of the model from a source, in the requested dtype and device.</summary>
public static class OptWeightLoader
{
    public static DecoderLayerWeights LoadLayer(IWeightSource source, OptConfig config, int layer, ScalarType dtype, Device device)
    {
        Tensor Req(string suffix) => source.Load(OptWeightNames.Layer(layer, suffix), dtype, device);
        Tensor? Opt(string suffix, bool present) => present ? Req(suffix) : null;
        LinearWeights Lin(string w, string b) => new(Req(w), Opt(b, config.EnableBias));
        NormWeights Norm(string w, string b) =>
            new(Opt(w, config.LayerNormElementwiseAffine), Opt(b, config.LayerNormElementwiseAffine));

        var attention = new AttentionWeights(
            Norm(S.AttnLayerNormWeight, S.AttnLayerNormBias),
            ModelArchitecture.LoadQkv(source, name => OptWeightNames.Layer(layer, name), config.EnableBias, dtype, device),
            Lin(S.OutWeight, S.OutBias));
        var ffn = new FfnWeights(
            Norm(S.FfnLayerNormWeight, S.FfnLayerNormBias), Lin(S.Fc1Weight, S.Fc1Bias), Lin(S.Fc2Weight, S.Fc2Bias));
        return new DecoderLayerWeights(attention, ffn);
    }

    public static InputWeights LoadInput(IWeightSource source, OptConfig config, ScalarType dtype, Device device) =>
        new(source.Load(OptWeightNames.EmbedTokens, dtype, device),
            source.Load(OptWeightNames.EmbedPositions, dtype, device),
            config.HasProjection ? source.Load(OptWeightNames.ProjectIn, dtype, device) : null);

    /// <param name="tiedEmbedTokens">The input's token embeddings on the same device, reused as the head when the checkpoint has no lm_head.</param>
    public static OutputWeights LoadOutput(IWeightSource source, OptConfig config, ScalarType dtype, Device device, Tensor? tiedEmbedTokens)
    {
        NormWeights? norm = null;
        if (config.HasFinalLayerNorm)
        {
            norm = config.LayerNormElementwiseAffine
                ? new NormWeights(source.Load(OptWeightNames.FinalLayerNormWeight, dtype, device),
                                  source.Load(OptWeightNames.FinalLayerNormBias, dtype, device))
                : new NormWeights(null, null);
        }
        var projectOut = config.HasProjection ? source.Load(OptWeightNames.ProjectOut, dtype, device) : null;
        if (source.Contains(OptWeightNames.LmHead))
            return new OutputWeights(norm, projectOut, source.Load(OptWeightNames.LmHead, dtype, device), OwnsLmHead: true);
        if (tiedEmbedTokens is not null && tiedEmbedTokens.device_type == device.type && tiedEmbedTokens.device_index == device.index
            && tiedEmbedTokens.dtype == dtype)
            return new OutputWeights(norm, projectOut, tiedEmbedTokens, OwnsLmHead: false);
        return new OutputWeights(norm, projectOut, source.Load(OptWeightNames.EmbedTokens, dtype, device), OwnsLmHead: true);
    }
}
