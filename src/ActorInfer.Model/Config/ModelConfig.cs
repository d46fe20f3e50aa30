using ActorInfer.Model.Layers;

namespace ActorInfer.Model.Config;

/// <summary>
/// What every decoder-only model the runtime serves has in common: its sizes, its special tokens and the
/// architecture that knows its tensors and its arithmetic. <see cref="OptConfig"/> and <see cref="LlamaConfig"/>
/// are the two kinds; the runtime, the planner's description of the model and the node see only this.
/// </summary>
public abstract record ModelConfig
{
    public required string Name { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int NumAttentionHeads { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    public int PadTokenId { get; init; } = 1;
    public int BosTokenId { get; init; } = 2;
    public int EosTokenId { get; init; } = 2;
    /// <summary>The checkpoint's dtype ("float16", "bfloat16", "float32").</summary>
    public string TorchDtype { get; init; } = "float16";

    /// <summary>The width of one attention head.</summary>
    public abstract int HeadDim { get; }

    /// <summary>Heads of the key/value projections and of the cache; fewer than the query heads under grouped-query attention.</summary>
    public abstract int NumKeyValueHeads { get; }

    /// <summary>The width of the MLP's inner layer (OPT's ffn_dim, LLaMA's intermediate_size).</summary>
    public abstract int FfnSize { get; }

    /// <summary>The width of one token's keys (or values) in one layer's cache.</summary>
    public int KeyValueDim => NumKeyValueHeads * HeadDim;

    /// <summary>The tensors and arithmetic of this kind of model.</summary>
    public abstract ModelArchitecture Architecture { get; }

    /// <summary>The config's kind as config.json's <c>model_type</c> names it ("opt", "llama", ...).</summary>
    public abstract string ModelType { get; }
}
