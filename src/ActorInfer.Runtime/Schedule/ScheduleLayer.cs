using ActorInfer.Model.Config;
using ActorInfer.Model.Layers;
using ActorInfer.Model.Weights;

namespace ActorInfer.Runtime.Schedule;

public enum ScheduleLayerKind
{
    Input,
    Decoder,
    Output,
}

/// <summary>One tensor of a schedule layer: the source name it is read from and its shape.</summary>
public sealed record WeightSpec(string Name, long[] Shape)
{
    public long Elements => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// A unit of the zig-zag schedule whose weights are loaded together: the input embedding, a decoder layer, or
/// the output head (as FlexGen's InputEmbed / OutputEmbed). With a tied head the output layer holds its own copy
/// of the token embeddings, so that it can live on a different tier than the input layer.
/// </summary>
public sealed record ScheduleLayer(ScheduleLayerKind Kind, int DecoderLayer, IReadOnlyList<WeightSpec> Weights)
{
    public static IReadOnlyList<ScheduleLayer> For(ModelConfig c, IWeightSource source)
    {
        var architecture = c.Architecture;
        var globals = architecture.GlobalTensors().ToDictionary(t => t.Name, t => t.Shape);
        var layers = new List<ScheduleLayer>(c.NumHiddenLayers + 2);

        layers.Add(new ScheduleLayer(ScheduleLayerKind.Input, -1, architecture.InputTensors().Select(Global).ToArray()));

        var layerTensors = architecture.LayerTensors();
        for (var i = 0; i < c.NumHiddenLayers; i++)
        {
            var layer = i;
            var specs = layerTensors.Select(t => new WeightSpec(architecture.LayerTensor(layer, t.Suffix), t.Shape)).ToArray();
            layers.Add(new ScheduleLayer(ScheduleLayerKind.Decoder, i, specs));
        }

        var output = architecture.OutputTensors().Select(Global).ToList();
        output.Add(source.Contains(ModelArchitecture.LmHead)
            ? new WeightSpec(ModelArchitecture.LmHead, source.Shape(ModelArchitecture.LmHead))
            : Global(architecture.EmbedTokens));
        layers.Add(new ScheduleLayer(ScheduleLayerKind.Output, -1, output));
        return layers;

        WeightSpec Global(string name) => new(name, globals[name]);
    }
}
