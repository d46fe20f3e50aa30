using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Tokenization;
using ActorInfer.Model.Weights;
using static TorchSharp.torch;

namespace ActorInfer.Cli;

/// <summary>A model resolved from the command line: its config, tokenizer (when it has one) and weight source.</summary>
public sealed class LoadedModel : IDisposable
{
    private LoadedModel(ModelConfig config, ITextCodec? codec, IWeightSource source)
    {
        Config = config;
        Codec = codec;
        Source = source;
    }

    public ModelConfig Config { get; }
    public ITextCodec? Codec { get; }
    public IWeightSource Source { get; }

    public static LoadedModel Open(string modelArg, bool dummy)
    {
        var config = ModelConfigs.Resolve(modelArg);
        var isDir = Directory.Exists(modelArg);
        if (!isDir && !dummy)
            throw new CliException($"'{modelArg}' is a named size without a checkpoint: pass --dummy for random weights, or give a checkpoint folder");
        var codec = ModelFiles.OpenCodec(modelArg);
        var source = dummy ? new DummyWeightSource(config, seed: 0) : ModelFiles.OpenCheckpoint(modelArg, config);
        return new LoadedModel(config, codec, source);
    }

    public void Dispose() => Source.Dispose();
}

public static class Devices
{
    public static Device Resolve(string name) => name switch
    {
        "cpu" => CPU,
        "cuda" when cuda.is_available() => CUDA,
        "cuda" => throw new CliException("--device cuda was asked for, but CUDA is not available on this machine"),
        _ => throw new CliException($"unknown device '{name}' (use cpu or cuda)", 2),
    };

    public static ScalarType ResolveDType(string? name, Device device) => name switch
    {
        null => device.type == TorchSharp.DeviceType.CUDA ? ScalarType.Float16 : ScalarType.Float32,
        "float32" => ScalarType.Float32,
        "float16" => ScalarType.Float16,
        "bfloat16" => ScalarType.BFloat16,
        _ => throw new CliException($"unknown dtype '{name}' (use float32, float16 or bfloat16)", 2),
    };
}
