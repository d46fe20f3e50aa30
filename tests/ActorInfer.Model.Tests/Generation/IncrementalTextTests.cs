using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Weights;

namespace ActorInfer.Model.Tests.Generation;

/// <summary>
/// A streamed completion's text a token at a time (<see cref="IncrementalText"/>): at every token the text out equals the
/// whole decoding's text short of an unfinished character, with the byte-level tokenizers of the fixtures (OPT's and
/// Llama's) over text with multi-byte characters split across tokens and over random ids, and each decoding is of a few
/// ids only.
/// </summary>
public sealed class IncrementalTextTests
{
    public static TheoryData<string> Tokenizers() => ["hf-opt/opt-tiny", "hf-llama/llama-tiny"];

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void Text_out_a_token_at_a_time_is_the_whole_decoding(string fixture)
    {
        var codec = ModelFiles.OpenCodec(Path.Combine(Fixtures.Directory, fixture))!;
        var text = "Tokens \u00e9t\u00e9 \u4e2d\u6587\u5b57 and \U0001F600\U0001F680 emoji, then plain words: the end.";
        // The ids begin with the BOS, a special token that decodes to nothing.
        AssertIncremental(codec, [.. codec.Encode(text)], expectWhole: text);
    }

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void Random_ids_come_out_as_the_whole_decoding_gives_them(string fixture)
    {
        var dir = Path.Combine(Fixtures.Directory, fixture);
        var codec = ModelFiles.OpenCodec(dir)!;
        var vocab = ModelConfigs.Resolve(dir).VocabSize;
        var random = new Random(23);
        for (var run = 0; run < 20; run++)
            AssertIncremental(codec, [.. Enumerable.Range(0, 64).Select(_ => random.Next(0, vocab))], expectWhole: null);
    }

    [Fact]
    public void Each_token_decodes_a_window_not_the_whole_sequence()
    {
        var codec = ModelFiles.OpenCodec(Fixtures.HfOpt("opt-tiny"))!;
        var longest = 0;
        var incremental = new IncrementalText(ids => { longest = Math.Max(longest, ids.Count); return codec.Decode(ids); });
        var text = string.Concat(Enumerable.Repeat("a word and another ", 100));
        var ids = codec.Encode(text);
        foreach (var id in ids) incremental.Add(id);
        Assert.Equal(text, incremental.From(0));
        Assert.True(ids.Count >= 400, $"{ids.Count} ids");
        Assert.InRange(longest, 1, 3);
    }

    private static void AssertIncremental(ITextCodec codec, int[] ids, string? expectWhole)
    {
        var incremental = new IncrementalText(codec.Decode);
        var joined = "";
        for (var i = 0; i < ids.Length; i++)
        {
            joined += incremental.Add(ids[i]);
            var whole = codec.Decode(ids[..(i + 1)]);
            Assert.Equal(whole.EndsWith('\uFFFD'), incremental.InCharacter);
            Assert.Equal(joined.Length, incremental.Length);
            // Out: the whole decoding, or short of it by the text since the last token that ended a character.
            Assert.StartsWith(joined, whole, StringComparison.Ordinal);
            if (!whole.EndsWith('\uFFFD')) Assert.Equal(whole, joined);
        }
        joined += incremental.Flush();
        Assert.Equal(codec.Decode(ids), joined);
        if (expectWhole is not null) Assert.Equal(expectWhole, joined);
    }
}
