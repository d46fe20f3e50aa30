using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace ActorInfer.Model.Tokenization;

/// <summary>
/// Byte-level BPE: OPT's tokenizer (GPT-2's, prepending <c>&lt;/s&gt;</c> to every prompt) and Llama 3's (its own split
/// regex, read from tokenizer.json, and its <c>&lt;|begin_of_text|&gt;</c>). Encoding uses
/// Microsoft.ML.Tokenizers; decoding is done here so that bytes which are not valid UTF-8 become U+FFFD exactly
/// as Hugging Face's (Python's <c>errors="replace"</c>) decoding does.
/// </summary>
public sealed partial class OptTokenizer
{
    private const string DefaultBos = "</s>";
    private static readonly string[] KnownSpecials = ["<s>", "<pad>", "</s>", "<unk>"];

    // One U+FFFD per maximal ill-formed subsequence: the same rule CPython's "replace" handler follows.
    private static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false);

    private readonly BpeTokenizer _bpe;
    private readonly string?[] _tokens;
    private readonly bool[] _special;

    private OptTokenizer(BpeTokenizer bpe, string?[] tokens, bool[] special, int? bosId, string? bos)
    {
        _bpe = bpe;
        _tokens = tokens;
        _special = special;
        BosTokenId = bosId;
        BosToken = bos;
    }

    /// <summary>The token prepended to every encoding (<c>&lt;/s&gt;</c> for OPT), or null when none is.</summary>
    public string? BosToken { get; }

    public int? BosTokenId { get; }

    /// <summary>One past the largest token id.</summary>
    public int VocabSize => _tokens.Length;

    /// <summary>
    /// Loads <c>vocab.json</c> + <c>merges.txt</c> from <paramref name="modelDir"/>, or <c>tokenizer.json</c> when
    /// they are absent; <c>tokenizer_config.json</c>, when present, names the prepended token.
    /// </summary>
    public static OptTokenizer Load(string modelDir)
    {
        ArgumentNullException.ThrowIfNull(modelDir);
        var vocabFile = Path.Combine(modelDir, "vocab.json");
        var mergesFile = Path.Combine(modelDir, "merges.txt");
        var tokenizerFile = Path.Combine(modelDir, "tokenizer.json");
        Dictionary<string, int> vocab;
        List<string> merges;
        string? splitPattern = null;
        var specials = new Dictionary<string, int>(StringComparer.Ordinal);
        if (File.Exists(vocabFile) && File.Exists(mergesFile))
        {
            vocab = TokenizerFiles.ReadVocab(vocabFile);
            merges = TokenizerFiles.ReadMergesText(mergesFile);
        }
        else if (File.Exists(tokenizerFile))
        {
            var (byteLevel, pattern) = TokenizerFiles.ReadPreTokenizer(tokenizerFile);
            if (!byteLevel)
                throw new InvalidDataException(
                    $"tokenizer file {tokenizerFile} is not byte-level BPE (a SentencePiece-style file, as Llama 2 and Mistral ship); " +
                    "put the checkpoint's tokenizer.model beside it");
            splitPattern = pattern;
            (vocab, merges) = TokenizerFiles.ReadTokenizerJson(tokenizerFile, specials);
        }
        else
        {
            throw new FileNotFoundException(
                $"{modelDir} holds neither vocab.json + merges.txt nor tokenizer.json", tokenizerFile);
        }
        foreach (var token in KnownSpecials)
            if (vocab.TryGetValue(token, out var id)) specials.TryAdd(token, id);
        foreach (var (token, id) in specials) vocab.TryAdd(token, id);

        var (addBos, bos) = TokenizerFiles.ReadBos(Path.Combine(modelDir, "tokenizer_config.json"), DefaultBos);
        int? bosId = null;
        if (addBos)
        {
            bosId = vocab.TryGetValue(bos, out var id)
                ? id
                : throw new InvalidDataException($"tokenizer in {modelDir} prepends '{bos}', which is not in its vocabulary");
        }
        return Create(vocab, merges, specials, addBos ? bos : null, bosId, splitPattern);
    }

    /// <summary>Token ids of <paramref name="text"/>, with <see cref="BosTokenId"/> first as OPT's tokenizer does.</summary>
    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = _bpe.EncodeToIds(text);
        if (BosTokenId is not { } bos) return ids;
        var withBos = new List<int>(ids.Count + 1) { bos };
        withBos.AddRange(ids);
        return withBos;
    }

    /// <summary>The text of <paramref name="ids"/>; byte sequences that are not UTF-8 decode to U+FFFD.</summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var bytes = new List<byte>();
        foreach (var id in ids)
        {
            if ((uint)id >= (uint)_tokens.Length || _tokens[id] is not { } token)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"token id {id} is not in the vocabulary");
            if (_special[id])
            {
                // Added tokens are stored as plain text, not in the byte alphabet.
                if (!skipSpecialTokens) bytes.AddRange(Encoding.UTF8.GetBytes(token));
                continue;
            }
            foreach (var c in token)
            {
                if (!ByteLevelAlphabet.TryGetByte(c, out var b))
                    throw new InvalidDataException($"token {id} '{token}' is not in the byte-level alphabet");
                bytes.Add(b);
            }
        }
        return Utf8.GetString(bytes.ToArray());
    }

    /// <summary>The vocabulary entry of one id (byte-level spelling), for diagnostics.</summary>
    public string TokenOf(int id) =>
        (uint)id < (uint)_tokens.Length && _tokens[id] is { } token
            ? token
            : throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is not in the vocabulary");

    private static OptTokenizer Create(
        Dictionary<string, int> vocab, List<string> merges, Dictionary<string, int> specials, string? bos, int? bosId, string? splitPattern)
    {
        Regex split;
        try
        {
            split = splitPattern is null ? Gpt2Split() : new Regex(splitPattern, RegexOptions.Compiled);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"the tokenizer's split pattern is not a regex this reader understands: {e.Message}", e);
        }
        var options = new BpeOptions(vocab)
        {
            Merges = merges,
            ByteLevel = true,
            PreTokenizer = new RegexPreTokenizer(split, specials),
            SpecialTokens = specials,
        };
        var bpe = BpeTokenizer.Create(options);

        var size = vocab.Values.Max() + 1;
        var tokens = new string?[size];
        var special = new bool[size];
        foreach (var (token, id) in vocab)
        {
            if (id < 0) throw new InvalidDataException($"vocabulary entry '{token}' has negative id {id}");
            tokens[id] = token;
        }
        foreach (var id in specials.Values) special[id] = true;
        return new OptTokenizer(bpe, tokens, special, bosId, bos);
    }

    /// <summary>GPT-2's pre-tokenizer: contractions, letter runs, digit runs, symbol runs, each with one leading space.</summary>
    [GeneratedRegex(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")]
    private static partial Regex Gpt2Split();
}
