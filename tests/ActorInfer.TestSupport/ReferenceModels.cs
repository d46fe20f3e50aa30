using System.Text.Json;
using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using TorchSharp;

namespace ActorInfer.TestSupport;

/// <summary>
/// Test-generated OPT checkpoints with weights large enough that greedy choices are far from ties, written in
/// Hugging Face's layout (config.json + model.safetensors) so they load through the same path as a real one.
/// </summary>
public static class ReferenceModels
{
    public static OptConfig PreLn(string name = "gen-preln") => new()
    {
        Name = name, VocabSize = 300, HiddenSize = 96, NumHiddenLayers = 3, NumAttentionHeads = 6, FfnDim = 192,
        MaxPositionEmbeddings = 64, WordEmbedProjDim = 96,
    };

    public static OptConfig PostLnProjected(string name = "gen-postln") => new()
    {
        Name = name, VocabSize = 257, HiddenSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 4, FfnDim = 160,
        MaxPositionEmbeddings = 48, WordEmbedProjDim = 48, DoLayerNormBefore = false,
    };

    public static OptConfig NoBiasNoAffine(string name = "gen-plain") => new()
    {
        Name = name, VocabSize = 200, HiddenSize = 32, NumHiddenLayers = 2, NumAttentionHeads = 2, FfnDim = 64,
        MaxPositionEmbeddings = 40, WordEmbedProjDim = 32, EnableBias = false, LayerNormElementwiseAffine = false,
        RemoveFinalLayerNorm = true,
    };

    /// <summary>
    /// Writes the checkpoint and returns its weights as read back through <see cref="SafetensorsCheckpoint"/>,
    /// as float arrays for <see cref="NaiveOpt"/>. Values are float16-representable, so float32 arithmetic on
    /// either side starts from identical numbers.
    /// </summary>
    public static Dictionary<string, float[]> Write(string directory, OptConfig config, long seed)
    {
        Directory.CreateDirectory(directory);
        WriteConfigJson(directory, config);
        var generator = new torch.Generator((ulong)seed);
        var tensors = new Dictionary<string, torch.Tensor>();
        try
        {
            foreach (var (name, shape) in WeightSourceValidation.ExpectedTensors(config))
            {
                using var draw = shape.Length == 1
                    ? (name.Contains("layer_norm") && name.EndsWith(".weight")
                        ? torch.rand(shape, generator: generator) * 0.5 + 0.75
                        : torch.randn(shape, generator: generator) * 0.1)
                    : torch.randn(shape, generator: generator) * (1.0 / Math.Sqrt(shape[^1]));
                tensors["model." + name] = draw.to_type(torch.ScalarType.Float16);
            }
            SafetensorsWriter.Write(Path.Combine(directory, SafetensorsCheckpoint.SingleFile), tensors);
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }

        using var checkpoint = SafetensorsCheckpoint.Open(directory);
        var weights = new Dictionary<string, float[]>();
        foreach (var (name, _) in WeightSourceValidation.ExpectedTensors(config))
        {
            using var t = checkpoint.Load(name, torch.ScalarType.Float32, torch.CPU);
            weights[name] = t.data<float>().ToArray();
        }
        return weights;
    }

    public static void WriteConfigJson(string directory, OptConfig c)
    {
        var json = new Dictionary<string, object>
        {
            ["model_type"] = "opt", ["architectures"] = new[] { "OPTForCausalLM" }, ["activation_function"] = "relu",
            ["vocab_size"] = c.VocabSize, ["hidden_size"] = c.HiddenSize, ["num_hidden_layers"] = c.NumHiddenLayers,
            ["num_attention_heads"] = c.NumAttentionHeads, ["ffn_dim"] = c.FfnDim,
            ["max_position_embeddings"] = c.MaxPositionEmbeddings, ["word_embed_proj_dim"] = c.WordEmbedProjDim,
            ["do_layer_norm_before"] = c.DoLayerNormBefore, ["enable_bias"] = c.EnableBias,
            ["layer_norm_elementwise_affine"] = c.LayerNormElementwiseAffine,
            ["_remove_final_layer_norm"] = c.RemoveFinalLayerNorm, ["pad_token_id"] = c.PadTokenId,
            ["bos_token_id"] = c.BosTokenId, ["eos_token_id"] = c.EosTokenId, ["torch_dtype"] = "float16",
        };
        File.WriteAllText(Path.Combine(directory, "config.json"), JsonSerializer.Serialize(json));
    }
}
