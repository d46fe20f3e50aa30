namespace ActorInfer.Planning;

/// <summary>
/// A model's weights as the groups that are placed over the tiers one group at a time (<see cref="WeightPlacement"/>):
/// FlexGen's schedule layers, which are the input layer, each decoder layer's attention and MLP, and the output layer.
/// A group lists its tensors' element counts in placement order: for OPT FlexGen's order (the projections with their
/// biases, then the layer norm), for LLaMA the same (the projections, then the norm).
/// </summary>
public sealed record WeightLayout
{
    public WeightLayout(IReadOnlyList<long> input, IReadOnlyList<IReadOnlyList<long>> layer, IReadOnlyList<long> output)
    {
        ArgumentNullException.ThrowIfNull(layer);
        Input = Checked(input, "input layer");
        Layer = [.. layer.Select(group => Checked(group, "decoder layer"))];
        Output = Checked(output, "output layer");
        if (Layer.Count == 0)
            throw new ArgumentException("a decoder layer needs at least one group of weights");
    }

    /// <summary>The input layer's tensors (token embeddings, and OPT's learned positions).</summary>
    public IReadOnlyList<long> Input { get; }

    /// <summary>One decoder layer's groups, the attention's and the MLP's; every decoder layer has the same.</summary>
    public IReadOnlyList<IReadOnlyList<long>> Layer { get; }

    /// <summary>The output layer's tensors: the final norm and the head (with a tied head, its own copy of the token embeddings).</summary>
    public IReadOnlyList<long> Output { get; }

    public long LayerElements => Layer.Sum(group => group.Sum());

    public long TotalElements(int layers) => Input.Sum() + layers * LayerElements + Output.Sum();

    /// <summary>
    /// OPT as FlexGen lists its weights: InputEmbed (tokens, positions), SelfAttention (Q, K, V and output projections,
    /// each with its bias, then the layer norm's weight and bias), MLP (fc1 and fc2 with their biases, then the layer
    /// norm) and OutputEmbed (the final layer norm, then the head tied to the token embeddings, held as a copy).
    /// </summary>
    public static WeightLayout Opt(long hidden, long ffn, long vocab, long positions)
    {
        long h = hidden, f = ffn;
        return new WeightLayout(
            input: [vocab * h, positions * h],
            layer: [[h * h, h, h * h, h, h * h, h, h * h, h, h, h], [f * h, f, h * f, h, h, h]],
            output: [h, h, vocab * h]);
    }

    public bool Equals(WeightLayout? other) =>
        other is not null && Input.SequenceEqual(other.Input) && Output.SequenceEqual(other.Output) &&
        Layer.Count == other.Layer.Count && Layer.Zip(other.Layer).All(pair => pair.First.SequenceEqual(pair.Second));

    public override int GetHashCode()
    {
        var hash = new HashCode();
        foreach (var size in Input.Concat(Layer.SelectMany(group => group)).Concat(Output))
            hash.Add(size);
        return hash.ToHashCode();
    }

    private static IReadOnlyList<long> Checked(IReadOnlyList<long> sizes, string where)
    {
        ArgumentNullException.ThrowIfNull(sizes);
        if (sizes.Count == 0 || sizes.Any(size => size <= 0))
            throw new ArgumentException($"the {where}'s weights must be one or more tensors of positive size");
        return [.. sizes];
    }
}
