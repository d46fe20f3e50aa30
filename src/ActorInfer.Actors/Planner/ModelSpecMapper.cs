using ActorInfer.Model.Config;
using ActorInfer.Planning;
using ActorInfer.Runtime.Placement;

namespace ActorInfer.Actors.Planner;

/// <summary>
/// Describes a model to the planner by plain numbers (Planning and Model never reference each other; the planner,
/// which knows both, does the translation).
/// </summary>
public static class ModelSpecMapper
{
    public static ModelSpec Resolve(string nameOrDirectory) => From(ModelConfigs.Resolve(nameOrDirectory));

    public static ModelSpec From(ModelConfig c, int? bytesPerElement = null) => ModelSpecs.From(c, bytesPerElement);
}
