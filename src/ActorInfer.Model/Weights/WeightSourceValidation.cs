using ActorInfer.Model.Layers;
using ActorInfer.Model.Config;

namespace ActorInfer.Model.Weights;

public static class WeightSourceValidation
{
    /// <summary>
    /// Checks that every tensor the config needs exists with the shape it needs, before any data is read;
    /// throws <see cref="InvalidDataException"/> naming the first missing or misshapen tensor.
    /// </summary>
    public static void Validate(this IWeightSource source, ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(config);
        foreach (var (name, shape) in ExpectedTensors(config)) Check(source, name, shape);
        // A tied head is absent; when a file carries one anyway it must still fit the embeddings.
        if (source.Contains(ModelArchitecture.LmHead))
            Check(source, ModelArchitecture.LmHead, config.Architecture.LmHeadShape);
    }

    /// <summary>Every tensor a config loads, global tensors first, then each layer's in order.</summary>
    public static IEnumerable<(string Name, long[] Shape)> ExpectedTensors(ModelConfig config)
    {
        var architecture = config.Architecture;
        foreach (var tensor in architecture.GlobalTensors()) yield return tensor;
        var layerTensors = architecture.LayerTensors();
        for (var layer = 0; layer < config.NumHiddenLayers; layer++)
            foreach (var (suffix, shape) in layerTensors)
                yield return (architecture.LayerTensor(layer, suffix), shape);
    }

    private static void Check(IWeightSource source, string name, long[] expected)
    {
        if (!source.Contains(name))
            throw new InvalidDataException($"the checkpoint lacks tensor {name} (shape {Format(expected)})");
        var actual = source.Shape(name);
        if (!actual.SequenceEqual(expected))
            throw new InvalidDataException(
                $"tensor {name} has shape {Format(actual)} but the config needs {Format(expected)}");
    }

    private static string Format(long[] shape) => "[" + string.Join(", ", shape) + "]";
}
