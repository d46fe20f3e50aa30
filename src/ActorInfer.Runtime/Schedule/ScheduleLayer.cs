using ActorInfer.Model.Config;
using ActorInfer.Model.Layers;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;

namespace ActorInfer.Runtime.Schedule;

public enum ScheduleLayerKind
{
    Input,
    Decoder,
    Output,
}

/// <summary>
/// One tensor of a schedule layer: the source name it is read from and its shape; or, with <paramref name="Parts"/>, a tensor
/// of the runtime's own (the stacked Q, K and V map) made of the source's parts stacked by rows as they are read.
/// </summary>
public sealed record WeightSpec(string Name, long[] Shape, IReadOnlyList<string>? Parts = null)
{
    /// <summary>The tensor read from <paramref name="source"/>: itself, or its parts stacked.</summary>
    public TorchSharp.torch.Tensor Load(IWeightSource source, TorchSharp.torch.ScalarType dtype, TorchSharp.torch.Device device)
    {
        if (Parts is null) return source.Load(Name, dtype, device);
        using var scope = TorchSharp.torch.NewDisposeScope();
        var parts = Parts.Select(p => source.Load(p, dtype, device)).ToArray();
        return TorchSharp.torch.cat(parts, 0).MoveToOuterDisposeScope();
    }

    public long Elements => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// A unit of the zig-zag schedule whose weights are loaded together: the input embedding, a decoder layer, or
/// the output head (as FlexGen's InputEmbed / OutputEmbed). With a tied head the output layer holds its own copy
/// of the token embeddings, so that it can live on a different tier than the input layer.
/// </summary>
/// <param name="PlacementGroups">
/// The groups its weights are placed over the tiers by, as indices into <paramref name="Weights"/> in placement order
/// (<see cref="WeightPlacement"/>): a decoder layer's attention and MLP, the whole input or output layer.
/// </param>
public sealed record ScheduleLayer(ScheduleLayerKind Kind, int DecoderLayer, IReadOnlyList<WeightSpec> Weights, IReadOnlyList<IReadOnlyList<int>> PlacementGroups)
{
    /// <summary>
    /// The placement groups as the source's tensors are apart (Q, K and V unstacked), by name and elements in placement
    /// order; null: <see cref="PlacementGroups"/> over <see cref="Weights"/>. Placement over the model as a whole places
    /// by these, so that a stack lies where its parts would.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<(string Name, long Elements)>>? ApartGroups { get; init; }

    /// <summary>The groups by name and elements, apart.</summary>
    public IReadOnlyList<IReadOnlyList<(string Name, long Elements)>> GroupsApart =>
        ApartGroups ?? [.. PlacementGroups.Select(group => (IReadOnlyList<(string, long)>)[.. group.Select(i => (Weights[i].Name, Weights[i].Elements))])];

    /// <param name="stackQkv">Where given, a decoder layer's Q, K and V weights (and biases) become one stacked tensor when it
    /// says that all of them are placed on one tier (by their checkpoint names).</param>
    public static IReadOnlyList<ScheduleLayer> For(ModelConfig c, IWeightSource source, Func<IReadOnlyList<string>, bool>? stackQkv = null) =>
        For(c, source.Contains(ModelArchitecture.LmHead) ? source.Shape(ModelArchitecture.LmHead) : null, stackQkv);

    /// <param name="lmHead">The shape of the source's untied head; null when the head is the token embeddings.</param>
    public static IReadOnlyList<ScheduleLayer> For(ModelConfig c, long[]? lmHead, Func<IReadOnlyList<string>, bool>? stackQkv = null)
    {
        var architecture = c.Architecture;
        var globals = architecture.GlobalTensors().ToDictionary(t => t.Name, t => t.Shape);
        var layers = new List<ScheduleLayer>(c.NumHiddenLayers + 2);

        layers.Add(Whole(ScheduleLayerKind.Input, architecture.InputTensors().Select(Global).ToArray()));

        var layerTensors = architecture.LayerTensors();
        var groups = architecture.LayerTensorGroups();
        var elements = layerTensors.ToDictionary(t => t.Suffix, t => t.Shape.Aggregate(1L, (a, b) => a * b));
        for (var i = 0; i < c.NumHiddenLayers; i++)
        {
            var layer = i;
            var specs = Stacked(layerTensors, suffix => architecture.LayerTensor(layer, suffix), stackQkv);
            layers.Add(new ScheduleLayer(ScheduleLayerKind.Decoder, i, specs, Grouped(specs, groups, suffix => architecture.LayerTensor(layer, suffix)))
            {
                ApartGroups = [.. groups.Select(group => (IReadOnlyList<(string, long)>)[.. group.Select(suffix =>
                    (architecture.LayerTensor(layer, suffix), elements[suffix]))])],
            });
        }

        var output = architecture.OutputTensors().Select(Global).ToList();
        output.Add(lmHead is not null ? new WeightSpec(ModelArchitecture.LmHead, lmHead) : Global(architecture.EmbedTokens));
        layers.Add(Whole(ScheduleLayerKind.Output, output));
        return layers;

        WeightSpec Global(string name) => new(name, globals[name]);
    }

    /// <summary>An input or output layer: its weights are one group, in their order.</summary>
    private static ScheduleLayer Whole(ScheduleLayerKind kind, IReadOnlyList<WeightSpec> weights) =>
        new(kind, -1, weights, [Enumerable.Range(0, weights.Count).ToArray()]);

    /// <summary>
    /// The placement groups of a decoder layer's specs: the architecture's groups of suffixes, a stacked Q, K and V map (or
    /// bias) where its first part is.
    /// </summary>
    private static IReadOnlyList<IReadOnlyList<int>> Grouped(IReadOnlyList<WeightSpec> specs, IReadOnlyList<IReadOnlyList<string>> groups,
        Func<string, string> name)
    {
        var index = new Dictionary<string, int>();
        for (var i = 0; i < specs.Count; i++)
            foreach (var part in specs[i].Parts ?? [specs[i].Name])
                index[part] = i;
        return groups.Select(group => (IReadOnlyList<int>)group.Select(suffix => index[name(suffix)]).Distinct().ToArray()).ToArray();
    }

    /// <summary>
    /// A decoder layer's tensors, its Q, K and V weights (and biases) as one stacked tensor where the first of them was, if
    /// <paramref name="stackQkv"/> agrees: a decoding step projects with one product, and the store holds, moves and
    /// compresses the three as one (compression groups lie within rows, so the stacked codes are the three's). Same bytes
    /// as the three, and where the three share a tier FlexGen's midpoint rule places the stack there too and every other
    /// tensor as before.
    /// </summary>
    private static WeightSpec[] Stacked(IReadOnlyList<(string Suffix, long[] Shape)> tensors, Func<string, string> name,
        Func<IReadOnlyList<string>, bool>? stackQkv)
    {
        var shapes = tensors.ToDictionary(t => t.Suffix, t => t.Shape);
        var parts = ModelArchitecture.QkvWeightParts.Concat(ModelArchitecture.QkvBiasParts).Where(shapes.ContainsKey).Select(name).ToArray();
        if (stackQkv is null || !ModelArchitecture.QkvWeightParts.All(shapes.ContainsKey) || !stackQkv(parts))
            return [.. tensors.Select(t => new WeightSpec(name(t.Suffix), t.Shape))];
        var specs = new List<WeightSpec>(tensors.Count);
        foreach (var (suffix, shape) in tensors)
        {
            var group = ModelArchitecture.QkvWeightParts.Contains(suffix) ? (ModelArchitecture.QkvWeight, ModelArchitecture.QkvWeightParts)
                : ModelArchitecture.QkvBiasParts.Contains(suffix) ? (ModelArchitecture.QkvBias, ModelArchitecture.QkvBiasParts)
                : default;
            if (group.Item1 is null || !group.Item2.All(shapes.ContainsKey))
            {
                specs.Add(new WeightSpec(name(suffix), shape));
                continue;
            }
            if (suffix != group.Item2[0]) continue;
            long[] stacked = [.. shape];
            stacked[0] = group.Item2.Sum(p => shapes[p][0]);
            specs.Add(new WeightSpec(name(group.Item1), stacked, [.. group.Item2.Select(name)]));
        }
        return [.. specs];
    }
}
