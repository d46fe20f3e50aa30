using ActorInfer.Model.Config;
using ActorInfer.Model.Layers;
using ActorInfer.Planning;
using ActorInfer.Runtime.Schedule;

namespace ActorInfer.Runtime.Placement;

/// <summary>Describes a model to the planner by plain numbers (Planning and Model never reference each other).</summary>
public static class ModelSpecs
{
    /// <param name="layers">
    /// The schedule layers of the runtime the planner places weights for, whose tensors are the units it moves (a runtime
    /// stacks a layer's Q, K and V into one tensor where its first policy places them on one tier, and they then move as
    /// one); null: the layers with every tensor apart.
    /// </param>
    public static ModelSpec From(ModelConfig c, int? bytesPerElement = null, IReadOnlyList<ScheduleLayer>? layers = null)
    {
        var spec = new ModelSpec(c.Name, c.NumHiddenLayers, c.HiddenSize, c.NumAttentionHeads, c.FfnSize, c.VocabSize,
            c.MaxPositionEmbeddings, bytesPerElement ?? ModelShape.ElementSize(c.TorchDtype))
        {
            WeightLayout = LayoutOf(c, layers),
            CpuAttendsCacheCodes = InvariantAttention.AttendsCodes(c.HeadDim, (long)c.NumKeyValueHeads * c.HeadDim),
        };
        // OPT's counts are the spec's own formulas; other architectures count their own tensors.
        if (c is OptConfig) return spec;
        var shape = new ModelShape(c);
        return spec with
        {
            KeyValueHeads = c.NumKeyValueHeads,
            HeadDim = c.HeadDim,
            LayerParameterCount = shape.ParametersPerLayer,
            GlobalParameterCount = shape.GlobalParameters,
            LayerMatrixParameterCount = c.Architecture.LayerTensors().Where(t => t.Shape.Length == 2).Sum(t => t.Shape[0] * t.Shape[1]),
            GatedFfn = c.Architecture.LayerTensors().Any(t => t.Suffix.Contains("gate_proj", StringComparison.Ordinal)),
        };
    }

    /// <summary>
    /// The placement groups of the runtime's schedule layers (<see cref="ScheduleLayer.PlacementGroups"/>), so that the
    /// planner places the weights as the runtime does: the input layer, a decoder layer's attention and MLP, the output
    /// layer with its head (untied when the config lists one).
    /// </summary>
    private static WeightLayout LayoutOf(ModelConfig c, IReadOnlyList<ScheduleLayer>? runtimeLayers)
    {
        var head = c.Architecture.GlobalTensors().FirstOrDefault(t => t.Name == ModelArchitecture.LmHead).Shape;
        var layers = runtimeLayers ?? ScheduleLayer.For(c, head);
        IReadOnlyList<long> Sizes(ScheduleLayer layer, IReadOnlyList<int> group) => [.. group.Select(i => layer.Weights[i].Elements)];
        var input = layers[0];
        var decoder = layers.First(l => l.Kind == ScheduleLayerKind.Decoder);
        var output = layers[^1];
        return new WeightLayout(
            input.PlacementGroups.SelectMany(group => Sizes(input, group)).ToArray(),
            decoder.PlacementGroups.Select(group => Sizes(decoder, group)).ToArray(),
            output.PlacementGroups.SelectMany(group => Sizes(output, group)).ToArray());
    }
}
