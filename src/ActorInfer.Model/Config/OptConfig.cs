using ActorInfer.Model.Layers;

namespace ActorInfer.Model.Config;

/// <summary>
/// The shape of an OPT model, as Hugging Face's <c>config.json</c> describes it. Field names follow the
/// checkpoint's keys so that a config round-trips without a translation table.
/// </summary>
public sealed record OptConfig : ModelConfig
{
    public required int FfnDim { get; init; }
    /// <summary>Embedding width; differs from <see cref="HiddenSize"/> in opt-350m (project_in / project_out).</summary>
    public required int WordEmbedProjDim { get; init; }
    /// <summary>True: pre-LayerNorm (most sizes); false: post-LayerNorm (opt-350m).</summary>
    public bool DoLayerNormBefore { get; init; } = true;
    public bool EnableBias { get; init; } = true;
    public bool LayerNormElementwiseAffine { get; init; } = true;
    /// <summary>Drops the decoder's final LayerNorm (some early checkpoints).</summary>
    public bool RemoveFinalLayerNorm { get; init; }

    /// <summary>OPT's learned positions are shifted by two (a fairseq legacy).</summary>
    public const int PositionOffset = 2;

    public override int HeadDim => HiddenSize / NumAttentionHeads;
    public override int NumKeyValueHeads => NumAttentionHeads;
    public override int FfnSize => FfnDim;
    public override string ModelType => "opt";
    public override ModelArchitecture Architecture => new OptArchitecture(this);
    public bool HasProjection => WordEmbedProjDim != HiddenSize;
    /// <summary>The final LayerNorm exists only for pre-LN models that do not remove it.</summary>
    public bool HasFinalLayerNorm => DoLayerNormBefore && !RemoveFinalLayerNorm;
}
