using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Tokenization;

namespace ActorInfer.Model.Weights;

/// <summary>Opens what a checkpoint folder holds: validated weights and, when its files are there, the tokenizer.</summary>
public static class ModelFiles
{
    /// <summary>
    /// The folder's weights, checked against the config (every tensor present, every shape right): safetensors when
    /// the folder has them, else PyTorch pickles (<c>pytorch_model.bin</c>, or shards with their index).
    /// </summary>
    public static IWeightSource OpenCheckpoint(string dir, ModelConfig config)
    {
        var hasSafetensors = File.Exists(Path.Combine(dir, SafetensorsCheckpoint.IndexFile)) || File.Exists(Path.Combine(dir, SafetensorsCheckpoint.SingleFile));
        if (!hasSafetensors && Directory.Exists(dir) && !PickleCheckpoint.IsIn(dir))
            throw new FileNotFoundException(
                $"checkpoint directory {dir} holds none of {SafetensorsCheckpoint.IndexFile}, {SafetensorsCheckpoint.SingleFile}, " +
                $"{PickleCheckpoint.IndexFile}, {PickleCheckpoint.SingleFile}", Path.Combine(dir, SafetensorsCheckpoint.SingleFile));
        IWeightSource checkpoint = hasSafetensors || !Directory.Exists(dir) ? SafetensorsCheckpoint.Open(dir) : PickleCheckpoint.Open(dir);
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
        File.Exists(Path.Combine(dir, "tokenizer.json")) || File.Exists(Path.Combine(dir, SentencePieceCodec.ModelFile)) ||
        (File.Exists(Path.Combine(dir, "vocab.json")) && File.Exists(Path.Combine(dir, "merges.txt")));

    /// <summary>
    /// The folder's tokenizer as a codec; null for a named size or a folder without tokenizer files. Byte-level BPE
    /// (vocab.json + merges.txt, or tokenizer.json) where the folder has it, else SentencePiece's tokenizer.model.
    /// </summary>
    public static ITextCodec? OpenCodec(string modelArg)
    {
        if (!Directory.Exists(modelArg) || !HasTokenizerFiles(modelArg)) return null;
        var json = Path.Combine(modelArg, "tokenizer.json");
        var byteLevel = (File.Exists(Path.Combine(modelArg, "vocab.json")) && File.Exists(Path.Combine(modelArg, "merges.txt"))) ||
                        (File.Exists(json) && TokenizerFiles.ReadPreTokenizer(json).ByteLevel);
        if (!byteLevel && File.Exists(Path.Combine(modelArg, SentencePieceCodec.ModelFile))) return SentencePieceCodec.Load(modelArg);
        return new TokenizerCodec(OptTokenizer.Load(modelArg));
    }

    private sealed class TokenizerCodec(OptTokenizer tokenizer) : ITextCodec
    {
        public IReadOnlyList<int> Encode(string text) => tokenizer.Encode(text);
        public string Decode(IReadOnlyList<int> ids) => tokenizer.Decode(ids, skipSpecialTokens: true);
    }
}
