using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using static TorchSharp.torch;

namespace ActorInfer.Model.Layers;

/// <summary>
/// What differs between decoder-only model families: the checkpoint's tensor names and shapes, how they load into
/// the weight records, and the arithmetic of the embedding, each half of a decoder layer and the output head. The
/// runtime schedules layers and places tensors through this alone; attention itself (<see cref="AttentionMath"/>)
/// and the cache are shared, the cache sized by <see cref="ModelConfig.NumKeyValueHeads"/>.
/// </summary>
public abstract class ModelArchitecture
{
    /// <summary>The untied output head's key; absent when the head is tied to the token embeddings.</summary>
    public const string LmHead = "lm_head.weight";

    public abstract ModelConfig Config { get; }

    /// <summary>How this instance forms its linear maps: <see cref="Products.Plain"/> unless made batch-invariant.</summary>
    public Products Products { get; private set; } = Products.Plain;

    /// <summary>This instance, forming its maps by <paramref name="products"/> (each <c>config.Architecture</c> is a new instance).</summary>
    public ModelArchitecture With(Products products)
    {
        Products = products;
        return this;
    }

    /// <summary>The token embeddings' key (also the head when it is tied).</summary>
    public abstract string EmbedTokens { get; }

    /// <summary>Added to each position (counted from 0 at a prompt's first token) before the model sees it.</summary>
    public virtual int PositionOffset => 0;

    /// <summary>Whether the decoder layers need the positions (rotary embeddings) rather than only the embedding.</summary>
    public virtual bool PositionsInLayers => false;

    /// <summary>The checkpoint key of a per-layer tensor (without the <c>model.</c> prefix).</summary>
    public abstract string LayerTensor(int layer, string suffix);

    /// <summary>The per-layer tensors, with their shapes ([out, in] for linear weights), in the order the layer uses them.</summary>
    public abstract IReadOnlyList<(string Suffix, long[] Shape)> LayerTensors();

    /// <summary>
    /// The per-layer tensors' suffixes as the two halves of a decoder layer, the attention's and the MLP's, each in the
    /// order FlexGen lists an OPT layer's weights: the projections with their biases, then the norm. Weights are placed
    /// over the tiers half by half, in this order.
    /// </summary>
    public abstract IReadOnlyList<IReadOnlyList<string>> LayerTensorGroups();

    /// <summary>The groups' suffixes that this config's layers have; every layer tensor must be in one group.</summary>
    protected IReadOnlyList<IReadOnlyList<string>> Present(IReadOnlyList<IReadOnlyList<string>> groups)
    {
        var present = LayerTensors().Select(t => t.Suffix).ToHashSet();
        var result = groups.Select(group => (IReadOnlyList<string>)[.. group.Where(present.Contains)]).ToArray();
        var grouped = result.SelectMany(group => group).ToArray();
        if (grouped.Length != present.Count || grouped.Distinct().Count() != grouped.Length)
            throw new InvalidOperationException($"the layer tensors ({string.Join(", ", present)}) are not each in one group");
        return result;
    }

    /// <summary>The tensors outside the decoder layers, with their shapes; the head only when it is not tied.</summary>
    public abstract IReadOnlyList<(string Name, long[] Shape)> GlobalTensors();

    /// <summary>The global tensors the input layer loads.</summary>
    public abstract IReadOnlyList<string> InputTensors();

    /// <summary>The global tensors the output layer loads besides its head.</summary>
    public abstract IReadOnlyList<string> OutputTensors();

    /// <summary>Whether random weights should hold ones (a norm's scale) or zeros (its shift) rather than noise.</summary>
    public abstract bool IsNorm(string name);

    /// <summary>The shape of an untied head.</summary>
    public long[] LmHeadShape => [Config.VocabSize, GlobalTensors().First(t => t.Name == EmbedTokens).Shape[1]];

    public abstract DecoderLayerWeights LoadLayer(IWeightSource source, int layer, ScalarType dtype, Device device);

    public abstract InputWeights LoadInput(IWeightSource source, ScalarType dtype, Device device);

    /// <param name="tiedEmbedTokens">The input's token embeddings on the same device, reused as the head when the checkpoint has no lm_head.</param>
    public abstract OutputWeights LoadOutput(IWeightSource source, ScalarType dtype, Device device, Tensor? tiedEmbedTokens);

    /// <summary>[B, T] ids -> [B, T, hidden]; <paramref name="positions"/> are shifted by <see cref="PositionOffset"/>.</summary>
    public abstract Tensor Embed(InputWeights w, Tensor tokenIds, Tensor positions);

    /// <summary>The input of the attention projections (the normed hidden state in pre-norm models).</summary>
    public abstract Tensor AttentionInput(Tensor hidden, AttentionWeights w);

    /// <summary>
    /// What the decoder layers make of the positions [B, T] (as for <see cref="Embed"/>), in <paramref name="dtype"/>: the
    /// same for every layer of a step, so built once per step. Null when the layers need nothing (learned positions).
    /// </summary>
    public virtual RotaryAngles? Angles(Tensor positions, ScalarType dtype) => null;

    /// <summary>
    /// The queries [B, heads, T, head_dim], keys [B, key/value heads, T, head_dim] (as the cache holds them) and values. In a
    /// decoding step they may be strided views of one projection.
    /// </summary>
    public abstract QueryKeyValue Project(Tensor attentionInput, AttentionWeights w, RotaryAngles? angles);

    /// <summary>Output projection and residual (and a post-norm), from the attention context [B, T, heads * head_dim].</summary>
    public abstract Tensor AttentionOutput(Tensor context, Tensor residual, AttentionWeights w);

    /// <summary>The MLP's first part, up to its activation.</summary>
    public abstract Tensor FfnUp(Tensor hidden, FfnWeights w);

    /// <summary>The MLP's second part over <see cref="FfnUp"/>'s output, with the residual.</summary>
    public abstract Tensor FfnDown(Tensor up, Tensor hidden, FfnWeights w);

    /// <summary>Final norm and the head: [B, T, hidden] -> [B, T, vocab].</summary>
    public abstract Tensor Logits(Tensor hidden, OutputWeights w);

    /// <summary>
    /// A whole decoder layer with an on-device cache: writes this step's keys and values at <paramref name="cacheIndex"/>
    /// and attends over the cache up to them.
    /// </summary>
    public Tensor DecoderLayer(Tensor hidden, DecoderLayerWeights w, LayerKv kv, int cacheIndex, Tensor mask, Tensor? positions)
    {
        using var attended = SelfAttention(hidden, w.Attention, kv, cacheIndex, mask, positions);
        using var up = FfnUp(attended, w.Ffn);
        return FfnDown(up, attended, w.Ffn);
    }

    private Tensor SelfAttention(Tensor hidden, AttentionWeights w, LayerKv kv, int cacheIndex, Tensor mask, Tensor? positions)
    {
        using var input = AttentionInput(hidden, w);
        using var angles = positions is null ? null : Angles(positions, hidden.dtype);
        using var qkv = Project(input, w, angles);
        kv.Write(cacheIndex, qkv.Keys, qkv.Values);
        var (keys, values) = kv.Prefix(cacheIndex + (int)qkv.Queries.size(2));
        using (keys)
        using (values)
        using (var context = AttentionMath.Attend(qkv.Queries, keys, values, mask))
            return AttentionOutput(context, hidden, w);
    }

    /// <summary>The runtime's name of the stacked Q, K and V map of a layer (no checkpoint has it), and of its bias.</summary>
    public const string QkvWeight = "self_attn.qkv_proj.weight", QkvBias = "self_attn.qkv_proj.bias";

    /// <summary>The checkpoint suffixes stacked into <see cref="QkvWeight"/> and <see cref="QkvBias"/>, in their order.</summary>
    public static readonly IReadOnlyList<string> QkvWeightParts = ["self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"],
        QkvBiasParts = ["self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"];

    /// <summary>
    /// A layer's Q, K and V maps: the stacked one where the source has it (the runtime's weight store stacks them where
    /// the three share a tier), else the checkpoint's three apart.
    /// </summary>
    /// <param name="name">The source's key of a per-layer suffix.</param>
    public static IReadOnlyList<LinearWeights> LoadQkv(IWeightSource source, Func<string, string> name, bool bias, ScalarType dtype, Device device)
    {
        var stacked = source.Contains(name(QkvWeight));
        var weights = stacked ? [QkvWeight] : QkvWeightParts;
        var biases = stacked ? [QkvBias] : QkvBiasParts;
        var maps = new List<LinearWeights>(3);
        try
        {
            for (var i = 0; i < weights.Count; i++)
                maps.Add(new LinearWeights(source.Load(name(weights[i]), dtype, device), bias ? source.Load(name(biases[i]), dtype, device) : null));
        }
        catch
        {
            foreach (var m in maps)
            {
                m.Weight.Dispose();
                m.Bias?.Dispose();
            }
            throw;
        }
        return maps;
    }
}
