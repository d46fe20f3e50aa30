using System.Diagnostics;
using System.Text.Json;
using ActorInfer.Model.Tokenization;

namespace ActorInfer.Model.Tests.Tokenization;

public sealed class OptTokenizerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("actorinfer-tok-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string, int> ExpectedLines()
    {
        var data = new TheoryData<string, int>();
        foreach (var model in Fixtures.HfOptModels)
        {
            var count = File.ReadLines(Path.Combine(Fixtures.HfOpt(model), "expected.jsonl")).Count();
            for (var line = 0; line < count; line++) data.Add(model, line);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(ExpectedLines))]
    public void MatchesHuggingFaceOnTheFixtures(string model, int line)
    {
        var expected = Line(model, line);
        foreach (var tokenizer in new[] { OptTokenizer.Load(Fixtures.HfOpt(model)), FromTokenizerJsonOnly(model) })
        {
            if (expected.TryGetProperty("prompt_text", out var text))
                Assert.Equal(Ids(expected, "prompt_ids"), tokenizer.Encode(text.GetString()!));
            Assert.Equal(expected.GetProperty("greedy_text").GetString(), tokenizer.Decode(Ids(expected, "greedy_new_tokens")));
        }
    }

    [Fact]
    public void PrependsTheEndOfSequenceTokenAsOptDoes()
    {
        var tokenizer = OptTokenizer.Load(Fixtures.HfOpt("opt-tiny"));
        Assert.Equal("</s>", tokenizer.BosToken);
        Assert.Equal(2, tokenizer.BosTokenId);
        Assert.Equal([2], tokenizer.Encode(""));
        Assert.Equal(1000, tokenizer.VocabSize);
    }

    [Fact]
    public void SpecialTokensAreSkippedOnlyWhenAsked()
    {
        var tokenizer = OptTokenizer.Load(Fixtures.HfOpt("opt-tiny"));
        var ids = tokenizer.Encode("Paris is");
        Assert.Equal("Paris is", tokenizer.Decode(ids));
        Assert.Equal("</s>Paris is", tokenizer.Decode(ids, skipSpecialTokens: false));
        Assert.Equal([2, .. ids.Skip(1), 2], tokenizer.Encode("Paris is</s>"));
        Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.Decode([1000]));
    }

    [Fact]
    public void RoundTripsTextOutsideTheVocabularyThroughBytes()
    {
        var tokenizer = OptTokenizer.Load(Fixtures.HfOpt("opt-tiny"));
        const string text = "Grüße, 東京 — naïve 😀\n\ttabs";
        Assert.Equal(text, tokenizer.Decode(tokenizer.Encode(text)));
    }

    [Fact]
    public void InvalidUtf8DecodesLikePythonsReplaceHandler()
    {
        var tokenizer = OptTokenizer.Load(Fixtures.HfOpt("opt-tiny"));
        // A lone continuation byte, a truncated 3-byte sequence, an overlong encoding and a surrogate: CPython
        // gives one U+FFFD per maximal ill-formed subpart, so "\xe2\x82" is one and "\xc0\xaf" is two.
        Assert.Equal("a\uFFFDb", tokenizer.Decode(ByteTokens(tokenizer, "a"u8.ToArray(), [0x80], "b"u8.ToArray())));
        Assert.Equal("\uFFFDx", tokenizer.Decode(ByteTokens(tokenizer, [0xE2, 0x82], "x"u8.ToArray())));
        Assert.Equal("\uFFFD\uFFFD", tokenizer.Decode(ByteTokens(tokenizer, [0xC0, 0xAF])));
        Assert.Equal("\uFFFD\uFFFD\uFFFD", tokenizer.Decode(ByteTokens(tokenizer, [0xED, 0xA0, 0x80])));
    }

    [Fact]
    public void MissingFilesAreNamed()
    {
        var error = Assert.Throws<FileNotFoundException>(() => OptTokenizer.Load(_dir));
        Assert.Contains("neither vocab.json + merges.txt nor tokenizer.json", error.Message);
    }

    /// <summary>The ids of the single-byte tokens spelling <paramref name="parts"/>, byte by byte.</summary>
    private static int[] ByteTokens(OptTokenizer tokenizer, params byte[][] parts)
    {
        var byteToId = new Dictionary<string, int>();
        for (var id = 0; id < tokenizer.VocabSize; id++) byteToId.TryAdd(tokenizer.TokenOf(id), id);
        return parts.SelectMany(p => p).Select(b => byteToId[ByteLevelSpelling(b)]).ToArray();
    }

    private static string ByteLevelSpelling(byte b)
    {
        var next = 0;
        for (var i = 0; i < 256; i++)
        {
            var printable = i is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            var c = printable ? (char)i : (char)(256 + next++);
            if (i == b) return c.ToString();
        }
        throw new UnreachableException();
    }

    private OptTokenizer FromTokenizerJsonOnly(string model)
    {
        var dir = Path.Combine(_dir, model);
        Directory.CreateDirectory(dir);
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" })
            File.Copy(Path.Combine(Fixtures.HfOpt(model), file), Path.Combine(dir, file), overwrite: true);
        return OptTokenizer.Load(dir);
    }

    private static JsonElement Line(string model, int line) =>
        JsonDocument.Parse(File.ReadLines(Path.Combine(Fixtures.HfOpt(model), "expected.jsonl")).ElementAt(line)).RootElement;

    private static int[] Ids(JsonElement line, string key) =>
        line.GetProperty(key).EnumerateArray().Select(e => e.GetInt32()).ToArray();
}
