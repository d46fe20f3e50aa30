using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using TorchSharp;

namespace ActorInfer.TestSupport;

/// <summary>Writes random OPT checkpoints of any shape, as Hugging Face lays them out (<c>model.</c> prefix).</summary>
public static class TestCheckpoints
{
    /// <summary>Writes <c>model.safetensors</c> for <paramref name="config"/> into <paramref name="directory"/>.</summary>
    public static string WriteRandom(
        string directory, OptConfig config, long seed = 0, torch.ScalarType dtype = torch.ScalarType.Float16,
        Func<string, long[], long[]>? reshape = null, Func<string, bool>? keep = null)
    {
        using var scope = torch.NewDisposeScope();
        using var source = new DummyWeightSource(config, seed);
        var tensors = new Dictionary<string, torch.Tensor>();
        foreach (var name in source.Names.Where(n => keep?.Invoke(n) ?? true))
        {
            var shape = reshape?.Invoke(name, source.Shape(name)) ?? source.Shape(name);
            tensors["model." + name] = shape.SequenceEqual(source.Shape(name))
                ? source.Load(name, dtype, torch.CPU)
                : torch.zeros(shape, dtype);
        }
        var path = Path.Combine(directory, SafetensorsCheckpoint.SingleFile);
        SafetensorsWriter.Write(path, tensors, new Dictionary<string, string> { ["format"] = "pt" });
        return path;
    }

    public static OptConfig Tiny(string name = "tiny") => new()
    {
        Name = name, VocabSize = 50, HiddenSize = 16, NumHiddenLayers = 2, NumAttentionHeads = 2, FfnDim = 32,
        MaxPositionEmbeddings = 8, WordEmbedProjDim = 16,
    };
}
