namespace ActorInfer.Model.Config;

/// <summary>
/// The Hugging Face checkpoint key of every OPT tensor. Keys are given without the <c>model.</c> prefix that
/// OPTForCausalLM checkpoints put in front of <c>decoder.</c>; weight sources resolve both spellings.
/// </summary>
public static class OptWeightNames
{
    public const string EmbedTokens = "decoder.embed_tokens.weight";
    public const string EmbedPositions = "decoder.embed_positions.weight";
    public const string ProjectIn = "decoder.project_in.weight";
    public const string ProjectOut = "decoder.project_out.weight";
    public const string FinalLayerNormWeight = "decoder.final_layer_norm.weight";
    public const string FinalLayerNormBias = "decoder.final_layer_norm.bias";
    /// <summary>Absent in OPT checkpoints: the head is tied to <see cref="EmbedTokens"/>.</summary>
    public const string LmHead = "lm_head.weight";

    public static string Layer(int layer, string suffix) => $"decoder.layers.{layer}.{suffix}";

    /// <summary>Per-layer tensor suffixes, in the order the layer uses them.</summary>
    public static class LayerSuffix
    {
        public const string AttnLayerNormWeight = "self_attn_layer_norm.weight";
        public const string AttnLayerNormBias = "self_attn_layer_norm.bias";
        public const string QWeight = "self_attn.q_proj.weight";
        public const string QBias = "self_attn.q_proj.bias";
        public const string KWeight = "self_attn.k_proj.weight";
        public const string KBias = "self_attn.k_proj.bias";
        public const string VWeight = "self_attn.v_proj.weight";
        public const string VBias = "self_attn.v_proj.bias";
        public const string OutWeight = "self_attn.out_proj.weight";
        public const string OutBias = "self_attn.out_proj.bias";
        public const string FfnLayerNormWeight = "final_layer_norm.weight";
        public const string FfnLayerNormBias = "final_layer_norm.bias";
        public const string Fc1Weight = "fc1.weight";
        public const string Fc1Bias = "fc1.bias";
        public const string Fc2Weight = "fc2.weight";
        public const string Fc2Bias = "fc2.bias";
    }

    /// <summary>
    /// The per-layer tensors a config has, with their shapes ([out, in] for linear weights, as checkpoints store
    /// them). Biases are absent when <see cref="OptConfig.EnableBias"/> is false; LayerNorm parameters when
    /// <see cref="OptConfig.LayerNormElementwiseAffine"/> is false.
    /// </summary>
    public static IReadOnlyList<(string Suffix, long[] Shape)> LayerTensors(OptConfig c)
    {
        var h = (long)c.HiddenSize;
        var f = (long)c.FfnDim;
        var list = new List<(string, long[])>();
        void Norm(string w, string b)
        {
            if (!c.LayerNormElementwiseAffine) return;
            list.Add((w, [h]));
            list.Add((b, [h]));
        }
        void Linear(string w, string b, long outDim, long inDim)
        {
            list.Add((w, [outDim, inDim]));
            if (c.EnableBias) list.Add((b, [outDim]));
        }
        Norm(LayerSuffix.AttnLayerNormWeight, LayerSuffix.AttnLayerNormBias);
        Linear(LayerSuffix.QWeight, LayerSuffix.QBias, h, h);
        Linear(LayerSuffix.KWeight, LayerSuffix.KBias, h, h);
        Linear(LayerSuffix.VWeight, LayerSuffix.VBias, h, h);
        Linear(LayerSuffix.OutWeight, LayerSuffix.OutBias, h, h);
        Norm(LayerSuffix.FfnLayerNormWeight, LayerSuffix.FfnLayerNormBias);
        Linear(LayerSuffix.Fc1Weight, LayerSuffix.Fc1Bias, f, h);
        Linear(LayerSuffix.Fc2Weight, LayerSuffix.Fc2Bias, h, f);
        return list;
    }

    /// <summary>The tensors outside the decoder layers, with their shapes (the LM head excluded: it is tied).</summary>
    public static IReadOnlyList<(string Name, long[] Shape)> GlobalTensors(OptConfig c)
    {
        var list = new List<(string, long[])>
        {
            (EmbedTokens, [c.VocabSize, c.WordEmbedProjDim]),
            (EmbedPositions, [c.MaxPositionEmbeddings + OptConfig.PositionOffset, c.HiddenSize]),
        };
        if (c.HasProjection)
        {
            list.Add((ProjectIn, [c.HiddenSize, c.WordEmbedProjDim]));
            list.Add((ProjectOut, [c.WordEmbedProjDim, c.HiddenSize]));
        }
        if (c.HasFinalLayerNorm && c.LayerNormElementwiseAffine)
        {
            list.Add((FinalLayerNormWeight, [c.HiddenSize]));
            list.Add((FinalLayerNormBias, [c.HiddenSize]));
        }
        return list;
    }
}
