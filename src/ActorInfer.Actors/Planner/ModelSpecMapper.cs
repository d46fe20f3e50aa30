using ActorInfer.Model.Config;
using ActorInfer.Planning;

namespace ActorInfer.Actors.Planner;

/// <summary>
/// Describes a model to the planner by plain numbers (Planning and Model never reference each other; the planner,
/// which knows both, does the translation).
/// </summary>
public static class ModelSpecMapper
{
    public static ModelSpec Resolve(string nameOrDirectory) => From(OptConfigs.Resolve(nameOrDirectory));

    public static ModelSpec From(OptConfig c, int? bytesPerElement = null) =>
        new(c.Name, c.NumHiddenLayers, c.HiddenSize, c.NumAttentionHeads, c.FfnDim, c.VocabSize, c.MaxPositionEmbeddings,
            bytesPerElement ?? ModelShape.ElementSize(c.TorchDtype));
}
