namespace ActorInfer.Model.Config;

/// <summary>
/// The shape of an OPT model, as Hugging Face's <c>config.json</c> describes it. Field names follow the
/// checkpoint's keys so that a config round-trips without a translation table.
/// </summary>
public sealed record OptConfig
{
    public required string Name { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int NumAttentionHeads { get; init; }
    public required int FfnDim { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    /// <summary>Embedding width; differs from <see cref="HiddenSize"/> in opt-350m (project_in / project_out).</summary>
    public required int WordEmbedProjDim { get; init; }
    /// <summary>True: pre-LayerNorm (most sizes); false: post-LayerNorm (opt-350m).</summary>
    public bool DoLayerNormBefore { get; init; } = true;
    public bool EnableBias { get; init; } = true;
    public bool LayerNormElementwiseAffine { get; init; } = true;
    /// <summary>Drops the decoder's final LayerNorm (some early checkpoints).</summary>
    public bool RemoveFinalLayerNorm { get; init; }
    public int PadTokenId { get; init; } = 1;
    public int BosTokenId { get; init; } = 2;
    public int EosTokenId { get; init; } = 2;
    /// <summary>The checkpoint's dtype ("float16", "bfloat16", "float32").</summary>
    public string TorchDtype { get; init; } = "float16";

    /// <summary>OPT's learned positions are shifted by two (a fairseq legacy).</summary>
    public const int PositionOffset = 2;

    public int HeadDim => HiddenSize / NumAttentionHeads;
    public bool HasProjection => WordEmbedProjDim != HiddenSize;
    /// <summary>The final LayerNorm exists only for pre-LN models that do not remove it.</summary>
    public bool HasFinalLayerNorm => DoLayerNormBefore && !RemoveFinalLayerNorm;
}
