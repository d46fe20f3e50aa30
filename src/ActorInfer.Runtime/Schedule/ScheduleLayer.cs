using ActorInfer.Model.Config;
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
    public static IReadOnlyList<ScheduleLayer> For(OptConfig c, IWeightSource source)
    {
        var globals = OptWeightNames.GlobalTensors(c).ToDictionary(t => t.Name, t => t.Shape);
        var layers = new List<ScheduleLayer>(c.NumHiddenLayers + 2);

        var input = new List<WeightSpec> { Global(OptWeightNames.EmbedTokens), Global(OptWeightNames.EmbedPositions) };
        if (c.HasProjection) input.Add(Global(OptWeightNames.ProjectIn));
        layers.Add(new ScheduleLayer(ScheduleLayerKind.Input, -1, input));

        for (var i = 0; i < c.NumHiddenLayers; i++)
        {
            var layer = i;
            var specs = OptWeightNames.LayerTensors(c).Select(t => new WeightSpec(OptWeightNames.Layer(layer, t.Suffix), t.Shape)).ToArray();
            layers.Add(new ScheduleLayer(ScheduleLayerKind.Decoder, i, specs));
        }

        var output = new List<WeightSpec>();
        if (c.HasFinalLayerNorm && c.LayerNormElementwiseAffine)
        {
            output.Add(Global(OptWeightNames.FinalLayerNormWeight));
            output.Add(Global(OptWeightNames.FinalLayerNormBias));
        }
        if (c.HasProjection) output.Add(Global(OptWeightNames.ProjectOut));
        output.Add(source.Contains(OptWeightNames.LmHead)
            ? new WeightSpec(OptWeightNames.LmHead, source.Shape(OptWeightNames.LmHead))
            : Global(OptWeightNames.EmbedTokens));
        layers.Add(new ScheduleLayer(ScheduleLayerKind.Output, -1, output));
        return layers;

        WeightSpec Global(string name) => new(name, globals[name]);
    }
}
