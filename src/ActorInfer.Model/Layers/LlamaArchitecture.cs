using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ActorInfer.Model.Layers;

/// <summary>
/// The LLaMA family: RMSNorm before each half, rotary positions applied to queries and keys, grouped-query attention,
/// a gated SiLU MLP, a final RMSNorm and a head that is tied or not. Keys as Hugging Face's LlamaForCausalLM names them.
/// </summary>
public sealed class LlamaArchitecture(LlamaConfig config) : ModelArchitecture
{
    public const string EmbedTokensName = "embed_tokens.weight";
    public const string FinalNorm = "norm.weight";

    /// <summary>Per-layer tensor suffixes.</summary>
    public static class Suffix
    {
        public const string InputNorm = "input_layernorm.weight";
        public const string QWeight = "self_attn.q_proj.weight";
        public const string QBias = "self_attn.q_proj.bias";
        public const string KWeight = "self_attn.k_proj.weight";
        public const string KBias = "self_attn.k_proj.bias";
        public const string VWeight = "self_attn.v_proj.weight";
        public const string VBias = "self_attn.v_proj.bias";
        public const string OWeight = "self_attn.o_proj.weight";
        public const string OBias = "self_attn.o_proj.bias";
        public const string PostAttentionNorm = "post_attention_layernorm.weight";
        public const string GateWeight = "mlp.gate_proj.weight";
        public const string GateBias = "mlp.gate_proj.bias";
        public const string UpWeight = "mlp.up_proj.weight";
        public const string UpBias = "mlp.up_proj.bias";
        public const string DownWeight = "mlp.down_proj.weight";
        public const string DownBias = "mlp.down_proj.bias";
    }

    private readonly Rotary _rotary = new(config.Rope, config.HeadDim, config.TorchDtype switch
    {
        "float16" => ScalarType.Float16,
        "bfloat16" => ScalarType.BFloat16,
        _ => ScalarType.Float32,
    });

    public override ModelConfig Config => config;

    public override string EmbedTokens => EmbedTokensName;

    public override bool PositionsInLayers => true;

    public override string LayerTensor(int layer, string suffix) => $"layers.{layer}.{suffix}";

    public override IReadOnlyList<(string Suffix, long[] Shape)> LayerTensors()
    {
        long h = config.HiddenSize, q = (long)config.NumAttentionHeads * config.HeadDim, kv = config.KeyValueDim, f = config.IntermediateSize;
        var list = new List<(string, long[])>();
        void Linear(string w, string b, long outDim, long inDim, bool bias)
        {
            list.Add((w, [outDim, inDim]));
            if (bias) list.Add((b, [outDim]));
        }
        list.Add((Suffix.InputNorm, [h]));
        Linear(Suffix.QWeight, Suffix.QBias, q, h, config.QkvBias);
        Linear(Suffix.KWeight, Suffix.KBias, kv, h, config.QkvBias);
        Linear(Suffix.VWeight, Suffix.VBias, kv, h, config.QkvBias);
        Linear(Suffix.OWeight, Suffix.OBias, h, q, config.OutputBias);
        list.Add((Suffix.PostAttentionNorm, [h]));
        Linear(Suffix.GateWeight, Suffix.GateBias, f, h, config.MlpBias);
        Linear(Suffix.UpWeight, Suffix.UpBias, f, h, config.MlpBias);
        Linear(Suffix.DownWeight, Suffix.DownBias, h, f, config.MlpBias);
        return list;
    }

    public override IReadOnlyList<IReadOnlyList<string>> LayerTensorGroups() => Present(
    [
        [Suffix.QWeight, Suffix.QBias, Suffix.KWeight, Suffix.KBias, Suffix.VWeight, Suffix.VBias, Suffix.OWeight, Suffix.OBias, Suffix.InputNorm],
        [Suffix.GateWeight, Suffix.GateBias, Suffix.UpWeight, Suffix.UpBias, Suffix.DownWeight, Suffix.DownBias, Suffix.PostAttentionNorm],
    ]);

    public override IReadOnlyList<(string Name, long[] Shape)> GlobalTensors()
    {
        var list = new List<(string, long[])>
        {
            (EmbedTokensName, [config.VocabSize, config.HiddenSize]),
            (FinalNorm, [config.HiddenSize]),
        };
        if (!config.TieWordEmbeddings) list.Add((LmHead, [config.VocabSize, config.HiddenSize]));
        return list;
    }

    public override IReadOnlyList<string> InputTensors() => [EmbedTokensName];

    public override IReadOnlyList<string> OutputTensors() => [FinalNorm];

    public override bool IsNorm(string name) => name.EndsWith("norm.weight", StringComparison.Ordinal);

    public override DecoderLayerWeights LoadLayer(IWeightSource source, int layer, ScalarType dtype, Device device)
    {
        Tensor Req(string suffix) => source.Load(LayerTensor(layer, suffix), dtype, device);
        LinearWeights Lin(string w, string b, bool bias) => new(Req(w), bias ? Req(b) : null);
        var attention = new AttentionWeights(new NormWeights(Req(Suffix.InputNorm), null),
            LoadQkv(source, suffix => LayerTensor(layer, suffix), config.QkvBias, dtype, device),
            Lin(Suffix.OWeight, Suffix.OBias, config.OutputBias));
        var ffn = new FfnWeights(new NormWeights(Req(Suffix.PostAttentionNorm), null),
            Lin(Suffix.UpWeight, Suffix.UpBias, config.MlpBias), Lin(Suffix.DownWeight, Suffix.DownBias, config.MlpBias),
            Lin(Suffix.GateWeight, Suffix.GateBias, config.MlpBias));
        return new DecoderLayerWeights(attention, ffn);
    }

    public override InputWeights LoadInput(IWeightSource source, ScalarType dtype, Device device) =>
        new(source.Load(EmbedTokensName, dtype, device), null, null);

    public override OutputWeights LoadOutput(IWeightSource source, ScalarType dtype, Device device, Tensor? tiedEmbedTokens)
    {
        var norm = new NormWeights(source.Load(FinalNorm, dtype, device), null);
        // A checkpoint may carry lm_head even when tied (some exports do); it then holds the same values.
        if (source.Contains(LmHead)) return new OutputWeights(norm, null, source.Load(LmHead, dtype, device), OwnsLmHead: true);
        if (tiedEmbedTokens is not null && tiedEmbedTokens.device_type == device.type && tiedEmbedTokens.device_index == device.index
            && tiedEmbedTokens.dtype == dtype)
            return new OutputWeights(norm, null, tiedEmbedTokens, OwnsLmHead: false);
        return new OutputWeights(norm, null, source.Load(EmbedTokensName, dtype, device), OwnsLmHead: true);
    }

    public override Tensor Embed(InputWeights w, Tensor tokenIds, Tensor positions)
    {
        var shape = tokenIds.Dims();
        using var flat = tokenIds.reshape(-1);
        using var tokens = w.EmbedTokens.index_select(0, flat);
        return tokens.view(shape[0], shape[1], -1);
    }

    // Scalars made once: an implicit conversion makes a native Scalar on every call, as add_(t) does for its alpha.
    private static readonly TorchSharp.Scalar One = TorchSharp.ScalarExtensionMethods.ToScalar(1), Two = TorchSharp.ScalarExtensionMethods.ToScalar(2);
    private readonly TorchSharp.Scalar _rmsNormEps = TorchSharp.ScalarExtensionMethods.ToScalar(config.RmsNormEps);

    /// <summary>RMSNorm in single precision, scaled in the model's dtype, as transformers' LlamaRMSNorm.</summary>
    public Tensor RmsNorm(Tensor x, NormWeights w) => Products.RowWise(x, rows => RmsNormRows(rows, w));

    private Tensor RmsNormRows(Tensor x, NormWeights w)
    {
        using var scope = NewDisposeScope();
        var wide = x.to(ScalarType.Float32);
        var variance = wide.pow(Two).mean([-1L], keepdim: true);
        // In place on the temporary: the same roundings as new tensors, fewer native calls.
        variance.add_(_rmsNormEps, One).rsqrt_();
        var normed = wide.mul(variance).to(x.dtype);
        return w.Weight!.mul(normed).MoveToOuterDisposeScope();
    }

    public override Tensor AttentionInput(Tensor hidden, AttentionWeights w) => RmsNorm(hidden, w.Norm);

    public override RotaryAngles? Angles(Tensor positions, ScalarType dtype) => Products.IsBatchInvariant
        ? _rotary.TabledAngles(positions, dtype, config.MaxPositionEmbeddings)
        : _rotary.Angles(positions, dtype);

    public override QueryKeyValue Project(Tensor attentionInput, AttentionWeights w, RotaryAngles? angles)
    {
        if (angles is null) throw new ArgumentException("rotary embeddings need the positions' angles", nameof(angles));
        var heads = QueryKeyValue.Project(attentionInput, w.Qkv, config.NumAttentionHeads, config.NumKeyValueHeads, config.HeadDim, Products);
        Tensor? queries = null;
        try
        {
            // A decoding step's queries and keys lie side by side in its one projection: turned as one tensor (the same
            // angles for every head, each element as it would be alone), half the native calls.
            using var both = heads.QueriesAndKeys();
            if (both is not null)
            {
                using var turned = Rotary.Apply(both, angles);
                queries = turned.narrow(1, 0, config.NumAttentionHeads);
                return new QueryKeyValue(queries, turned.narrow(1, config.NumAttentionHeads, config.NumKeyValueHeads), heads.Values);
            }
            queries = Rotary.Apply(heads.Queries, angles);
            return new QueryKeyValue(queries, Rotary.Apply(heads.Keys, angles), heads.Values);
        }
        catch
        {
            queries?.Dispose();
            heads.Values.Dispose();
            throw;
        }
        finally
        {
            heads.Queries.Dispose();
            heads.Keys.Dispose();
        }
    }

    public override Tensor AttentionOutput(Tensor context, Tensor residual, AttentionWeights w)
    {
        var summed = Products.Linear(context, w.Out.Weight, w.Out.Bias);
        summed.add_(residual, One);
        return summed;
    }

    public override Tensor FfnUp(Tensor hidden, FfnWeights w)
    {
        using var input = RmsNorm(hidden, w.Norm);
        var gate = w.Gate ?? throw new ArgumentException("a LLaMA MLP needs its gate projection", nameof(w));
        var gated = Products.Linear(input, gate.Weight, gate.Bias);
        try
        {
            using var up = Products.Linear(input, w.Fc1.Weight, w.Fc1.Bias);
            // In place on the projection: the same roundings as new tensors, fewer native calls.
            if (!Products.IsBatchInvariant)
            {
                F.silu(gated, inplace: true);
                return gated.mul_(up);
            }
            using (gated)
            {
                using var activated = Products.RowWise(gated, rows => F.silu(rows));
                return activated.mul(up);
            }
        }
        catch
        {
            gated.Dispose();
            throw;
        }
    }

    public override Tensor FfnDown(Tensor up, Tensor hidden, FfnWeights w)
    {
        var summed = Products.Linear(up, w.Fc2.Weight, w.Fc2.Bias);
        summed.add_(hidden, One);
        return summed;
    }

    public override Tensor Logits(Tensor hidden, OutputWeights w)
    {
        using var normed = RmsNorm(hidden, w.FinalNorm ?? throw new ArgumentException("a LLaMA head needs its final norm", nameof(w)));
        return Products.Linear(normed, w.LmHead);
    }

}
