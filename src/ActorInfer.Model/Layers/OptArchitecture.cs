using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using static TorchSharp.torch;
using S = ActorInfer.Model.Config.OptWeightNames.LayerSuffix;

namespace ActorInfer.Model.Layers;

/// <summary>OPT: learned positions, LayerNorm before (or after) each half, ReLU MLP, a head tied to the embeddings.</summary>
public sealed class OptArchitecture(OptConfig config) : ModelArchitecture
{
    public override ModelConfig Config => config;

    public override string EmbedTokens => OptWeightNames.EmbedTokens;

    public override int PositionOffset => OptConfig.PositionOffset;

    public override string LayerTensor(int layer, string suffix) => OptWeightNames.Layer(layer, suffix);

    public override IReadOnlyList<(string Suffix, long[] Shape)> LayerTensors() => OptWeightNames.LayerTensors(config);

    public override IReadOnlyList<IReadOnlyList<string>> LayerTensorGroups() => Present(
    [
        [S.QWeight, S.QBias, S.KWeight, S.KBias, S.VWeight, S.VBias, S.OutWeight, S.OutBias, S.AttnLayerNormWeight, S.AttnLayerNormBias],
        [S.Fc1Weight, S.Fc1Bias, S.Fc2Weight, S.Fc2Bias, S.FfnLayerNormWeight, S.FfnLayerNormBias],
    ]);

    public override IReadOnlyList<(string Name, long[] Shape)> GlobalTensors() => OptWeightNames.GlobalTensors(config);

    public override IReadOnlyList<string> InputTensors() => config.HasProjection
        ? [OptWeightNames.EmbedTokens, OptWeightNames.EmbedPositions, OptWeightNames.ProjectIn]
        : [OptWeightNames.EmbedTokens, OptWeightNames.EmbedPositions];

    public override IReadOnlyList<string> OutputTensors()
    {
        var names = new List<string>();
        if (config.HasFinalLayerNorm && config.LayerNormElementwiseAffine)
            names.AddRange([OptWeightNames.FinalLayerNormWeight, OptWeightNames.FinalLayerNormBias]);
        if (config.HasProjection) names.Add(OptWeightNames.ProjectOut);
        return names;
    }

    public override bool IsNorm(string name) => name.Contains("layer_norm.", StringComparison.Ordinal);

    public override DecoderLayerWeights LoadLayer(IWeightSource source, int layer, ScalarType dtype, Device device) =>
        OptWeightLoader.LoadLayer(source, config, layer, dtype, device);

    public override InputWeights LoadInput(IWeightSource source, ScalarType dtype, Device device) =>
        OptWeightLoader.LoadInput(source, config, dtype, device);

    public override OutputWeights LoadOutput(IWeightSource source, ScalarType dtype, Device device, Tensor? tiedEmbedTokens) =>
        OptWeightLoader.LoadOutput(source, config, dtype, device, tiedEmbedTokens);

    public override Tensor Embed(InputWeights w, Tensor tokenIds, Tensor positions) => OptMath.Embed(w, tokenIds, positions, Products);

    public override Tensor AttentionInput(Tensor hidden, AttentionWeights w) => OptMath.AttentionInput(hidden, w, config);

    public override QueryKeyValue Project(Tensor attentionInput, AttentionWeights w, RotaryAngles? angles) =>
        QueryKeyValue.Project(attentionInput, w.Qkv, config.NumAttentionHeads, config.NumAttentionHeads, config.HeadDim, Products);

    public override Tensor AttentionOutput(Tensor context, Tensor residual, AttentionWeights w) =>
        OptMath.AttentionOutput(context, residual, w, config, Products);

    public override Tensor FfnUp(Tensor hidden, FfnWeights w) => OptMath.FfnUp(hidden, w, config, Products);

    public override Tensor FfnDown(Tensor up, Tensor hidden, FfnWeights w) => OptMath.FfnDown(up, hidden, w, config, Products);

    public override Tensor Logits(Tensor hidden, OutputWeights w) => OptMath.Logits(hidden, w, Products);
}
