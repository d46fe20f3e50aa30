using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Tokenization;

namespace ActorInfer.Model.Weights;

/// <summary>Opens what a checkpoint folder holds: validated weights and, when its files are there, the tokenizer.</summary>
public static class ModelFiles
{
    /// <summary>The folder's safetensors, checked against the config (every tensor present, every shape right).</summary>
    public static IWeightSource OpenCheckpoint(string dir, ModelConfig config)
    {
        var checkpoint = SafetensorsCheckpoint.Open(dir);
        try
        {
            checkpoint.Validate(config);
            return checkpoint;
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    public static bool HasTokenizerFiles(string dir) =>
        File.Exists(Path.Combine(dir, "tokenizer.json")) ||
        (File.Exists(Path.Combine(dir, "vocab.json")) && File.Exists(Path.Combine(dir, "merges.txt")));

    /// <summary>The folder's tokenizer as a codec; null for a named size or a folder without tokenizer files.</summary>
    public static ITextCodec? OpenCodec(string modelArg) =>
        Directory.Exists(modelArg) && HasTokenizerFiles(modelArg) ? new TokenizerCodec(OptTokenizer.Load(modelArg)) : null;

    private sealed class TokenizerCodec(OptTokenizer tokenizer) : ITextCodec
    {
        public IReadOnlyList<int> Encode(string text) => tokenizer.Encode(text);
        public string Decode(IReadOnlyList<int> ids) => tokenizer.Decode(ids, skipSpecialTokens: true);
    }
}
