using ActorInfer.Model.Layers;

namespace ActorInfer.Model.Config;

/// <summary>
/// The shape of a LLaMA-family model (Llama 2 and 3, Mistral, Qwen2), as Hugging Face's <c>config.json</c> describes
/// it: rotary positions, RMSNorm, a gated SiLU MLP and grouped-query attention.
/// </summary>
public sealed record LlamaConfig : ModelConfig
{
    public required int IntermediateSize { get; init; }
    /// <summary>Key/value heads; equal to the query heads without grouped-query attention.</summary>
    public required int KeyValueHeads { get; init; }
    /// <summary>config.json's head_dim; hidden_size / num_attention_heads when absent.</summary>
    public int? ExplicitHeadDim { get; init; }
    public double RmsNormEps { get; init; } = 1e-6;
    public RopeSettings Rope { get; init; } = new();
    /// <summary>Biases on the query, key and value projections (attention_bias; always in Qwen2).</summary>
    public bool QkvBias { get; init; }
    /// <summary>A bias on the attention's output projection (attention_bias in Llama; never in Qwen2).</summary>
    public bool OutputBias { get; init; }
    public bool MlpBias { get; init; }
    public bool TieWordEmbeddings { get; init; }
    /// <summary>"llama", "mistral" or "qwen2": the same arithmetic, named as the checkpoint names it.</summary>
    public string Family { get; init; } = "llama";

    public override int HeadDim => ExplicitHeadDim ?? HiddenSize / NumAttentionHeads;
    public override int NumKeyValueHeads => KeyValueHeads;
    public override int FfnSize => IntermediateSize;
    public override string ModelType => Family;
    public override ModelArchitecture Architecture => new LlamaArchitecture(this);
}

/// <summary>
/// Rotary embeddings: the base and the frequency scaling Llama 3.1+ (<c>llama3</c>) and linear interpolation
/// (<c>linear</c>) apply; <c>default</c> scales nothing.
/// </summary>
public sealed record RopeSettings
{
    public double Theta { get; init; } = 10000.0;
    public string Type { get; init; } = "default";
    public double Factor { get; init; } = 1.0;
    public double LowFreqFactor { get; init; } = 1.0;
    public double HighFreqFactor { get; init; } = 4.0;
    public int OriginalMaxPositionEmbeddings { get; init; } = 8192;
}
