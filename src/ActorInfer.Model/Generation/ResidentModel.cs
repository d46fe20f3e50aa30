using ActorInfer.Model.Config;
using ActorInfer.Model.Layers;
using ActorInfer.Model.Weights;
using static TorchSharp.torch;

namespace ActorInfer.Model.Generation;

/// <summary>A whole model resident on one device: the simple placement (everything on the compute device).</summary>
public sealed class ResidentModel : IDisposable
{
    private ResidentModel(ModelConfig config, InputWeights input, IReadOnlyList<DecoderLayerWeights> layers, OutputWeights output,
        ScalarType dtype, Device device)
    {
        Config = config;
        Architecture = config.Architecture;
        Input = input;
        Layers = layers;
        Output = output;
        DType = dtype;
        Device = device;
    }

    public ModelConfig Config { get; }
    public ModelArchitecture Architecture { get; }
    public InputWeights Input { get; }
    public IReadOnlyList<DecoderLayerWeights> Layers { get; }
    public OutputWeights Output { get; }
    public ScalarType DType { get; }
    public Device Device { get; }

    public static ResidentModel Load(IWeightSource source, ModelConfig config, ScalarType dtype, Device device)
    {
        using var scope = NewDisposeScope();
        var architecture = config.Architecture;
        var input = architecture.LoadInput(source, dtype, device);
        var layers = new List<DecoderLayerWeights>(config.NumHiddenLayers);
        for (var i = 0; i < config.NumHiddenLayers; i++)
            layers.Add(architecture.LoadLayer(source, i, dtype, device));
        var output = architecture.LoadOutput(source, dtype, device, input.EmbedTokens);
        var model = new ResidentModel(config, input, layers, output, dtype, device);
        foreach (var t in model.AllTensors()) t.MoveToOuterDisposeScope();
        return model;
    }

    public IEnumerable<Tensor> AllTensors()
    {
        foreach (var t in Input.Tensors()) yield return t;
        foreach (var layer in Layers)
            foreach (var t in layer.Tensors()) yield return t;
        foreach (var t in Output.Tensors()) yield return t;
    }

    public void Dispose()
    {
        Input.Dispose();
        foreach (var layer in Layers) layer.Dispose();
        Output.Dispose();
    }
}
