using ActorInfer.Model.Config;
using ActorInfer.Model.Layers;
using ActorInfer.Model.Weights;
using static TorchSharp.torch;

namespace ActorInfer.Model.Generation;

/// <summary>A whole OPT model resident on one device: the simple placement (everything on the compute device).</summary>
public sealed class OptModel : IDisposable
{
    private OptModel(OptConfig config, InputWeights input, IReadOnlyList<DecoderLayerWeights> layers, OutputWeights output,
        ScalarType dtype, Device device)
    {
        Config = config;
        Input = input;
        Layers = layers;
        Output = output;
        DType = dtype;
        Device = device;
    }

    public OptConfig Config { get; }
    public InputWeights Input { get; }
    public IReadOnlyList<DecoderLayerWeights> Layers { get; }
    public OutputWeights Output { get; }
    public ScalarType DType { get; }
    public Device Device { get; }

    public static OptModel Load(IWeightSource source, OptConfig config, ScalarType dtype, Device device)
    {
        using var scope = NewDisposeScope();
        var input = OptWeightLoader.LoadInput(source, config, dtype, device);
        var layers = new List<DecoderLayerWeights>(config.NumHiddenLayers);
        for (var i = 0; i < config.NumHiddenLayers; i++)
            layers.Add(OptWeightLoader.LoadLayer(source, config, i, dtype, device));
        var output = OptWeightLoader.LoadOutput(source, config, dtype, device, input.EmbedTokens);
        var model = new OptModel(config, input, layers, output, dtype, device);
        foreach (var t in model.AllTensors()) t.MoveToOuterDisposeScope();
        return model;
    }

    public IEnumerable<Tensor> AllTensors()
    {
        yield return Input.EmbedTokens;
        yield return Input.EmbedPositions;
        if (Input.ProjectIn is not null) yield return Input.ProjectIn;
        foreach (var layer in Layers)
            foreach (var t in layer.Tensors()) yield return t;
        if (Output.FinalNorm?.Weight is not null) yield return Output.FinalNorm.Weight;
        if (Output.FinalNorm?.Bias is not null) yield return Output.FinalNorm.Bias;
        if (Output.ProjectOut is not null) yield return Output.ProjectOut;
        if (Output.OwnsLmHead) yield return Output.LmHead;
    }

    public void Dispose()
    {
        Input.Dispose();
        foreach (var layer in Layers) layer.Dispose();
        Output.Dispose();
    }
}
