using System.CommandLine;
using ActorInfer.Actors.Configuration;

namespace ActorInfer.Cli;

/// <summary>
/// `--weight-placement flexgen|spread`, spelled, typed and defaulted the same on every command that takes it (`plan`,
/// `bench`, `generate`), as a node's `planner.weight-placement`.
/// </summary>
public static class WeightPlacementOption
{
    public static Option<string> Create()
    {
        var option = new Option<string>("--weight-placement")
        {
            Description = "How the weight percentages become whole tensors on the tiers: flexgen (FlexGen's rule within each layer's attention and MLP apart, so that --percent means what it means in FlexGen: for OPT, 20% on the GPU places about 8%; default) or spread (over the model as a whole, to within half a tensor of the percentage, spread evenly over the layers). Outputs are the same either way.",
            DefaultValueFactory = _ => WeightPlacementNames.FlexGen,
        };
        option.OneOf(WeightPlacementNames.All);
        return option;
    }

    /// <summary>Whether the weights are spread over the model.</summary>
    public static bool Spread(string value) => value == WeightPlacementNames.Spread;
}
