using ActorInfer.Model.Generation;
using Microsoft.ML.Tokenizers;

namespace ActorInfer.Model.Tokenization;

/// <summary>
/// A SentencePiece <c>tokenizer.model</c> (Llama 2, Mistral) through Microsoft.ML.Tokenizers, with the checkpoint's
/// BOS as tokenizer_config.json's add_bos_token says (on unless it says false), and special tokens skipped in decoding.
/// </summary>
public sealed class SentencePieceCodec : ITextCodec
{
    public const string ModelFile = "tokenizer.model";

    private readonly SentencePieceTokenizer _tokenizer;

    private SentencePieceCodec(SentencePieceTokenizer tokenizer) => _tokenizer = tokenizer;

    public int? BosTokenId => _tokenizer.AddBeginningOfSentence ? _tokenizer.BeginningOfSentenceId : null;

    public static SentencePieceCodec Load(string modelDir)
    {
        var path = Path.Combine(modelDir, ModelFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"{modelDir} holds no {ModelFile}", path);
        var (addBos, _) = TokenizerFiles.ReadBos(Path.Combine(modelDir, "tokenizer_config.json"), "<s>");
        using var stream = File.OpenRead(path);
        try
        {
            return new SentencePieceCodec(LlamaTokenizer.Create(stream, addBeginOfSentence: addBos, addEndOfSentence: false));
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException or Google.Protobuf.InvalidProtocolBufferException)
        {
            throw new InvalidDataException($"{path} is not a SentencePiece model: {e.Message}", e);
        }
    }

    public IReadOnlyList<int> Encode(string text) => _tokenizer.EncodeToIds(text);

    public string Decode(IReadOnlyList<int> ids) => _tokenizer.Decode(ids, considerSpecialTokens: false);
}
