using ActorInfer.Model.Config;
using ActorInfer.Planning;

namespace ActorInfer.Runtime.Placement;

/// <summary>Describes a model to the planner by plain numbers (Planning and Model never reference each other).</summary>
public static class ModelSpecs
{
    public static ModelSpec From(ModelConfig c, int? bytesPerElement = null)
    {
        var spec = new ModelSpec(c.Name, c.NumHiddenLayers, c.HiddenSize, c.NumAttentionHeads, c.FfnSize, c.VocabSize,
            c.MaxPositionEmbeddings, bytesPerElement ?? ModelShape.ElementSize(c.TorchDtype));
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
}
