using System.Text.Json;
using System.Text.Json.Nodes;
using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Weights;
using ActorInfer.TestSupport;

namespace ActorInfer.Gateway.Tests;

/// <summary>
/// A completion's stream chunks from its tokens as they land and from its result (<see cref="CompletionOutput"/>), with
/// the OPT fixture's byte-level tokenizer: characters split over several tokens go out whole, the chunks join to the
/// result's text, text that could begin a stop sequence is held back, and each token has its chunk.
/// </summary>
public sealed class CompletionOutputTests
{
    private static readonly string Dir = Fixtures.HfOpt("opt-tiny");
    private static readonly ITextCodec Codec = ModelFiles.OpenCodec(Dir)!;
    private static readonly CompletionFactory Factory = new(ModelConfigs.Resolve(Dir), Codec);
    private const string Text = "caf\u00e9 \u4e2d\u6587 \U0001F600 and STOP here, then more words after it.";

    [Theory]
    [InlineData(0)]   // no token streamed before the result
    [InlineData(7)]   // some
    [InlineData(-1)]  // every one
    public void Live_chunks_and_the_results_chunks_join_to_its_text_a_chunk_a_token(int live)
    {
        var ids = Output(Text);
        var output = new CompletionOutput("cmpl-1", "opt-tiny", 0, Factory);
        var streamed = live < 0 ? ids.Length : live;
        var texts = Texts(output.LiveChunks(0, ids[..streamed])).ToList();
        Assert.Equal(streamed, texts.Count);
        Assert.DoesNotContain(texts, t => t.Contains('\uFFFD'));
        var rest = Texts(output.Chunks(ResultLine(ids, Text, "length"), includeUsage: false)).ToList();
        // After the live ones, a chunk for each token not streamed but those that end inside a character (the next one
        // carries it), the last carrying the finish; the finish alone where every token was streamed.
        var whole = Enumerable.Range(streamed, ids.Length - streamed)
            .Count(i => i == ids.Length - 1 || !Codec.Decode(ids[..(i + 1)]).EndsWith('\uFFFD'));
        Assert.Equal(Math.Max(1, whole), rest.Count);
        Assert.True(whole < ids.Length - streamed || streamed == ids.Length, "the text splits characters over tokens");
        Assert.Equal(Text, string.Concat(texts.Concat(rest)));
    }

    [Fact]
    public void A_special_token_amid_the_output_has_its_chunk_from_the_result_too()
    {
        var text = Output(Text);
        int[] ids = [.. text[..5], 2, .. text[5..]]; // 2: the fixture's </s>, which decodes to nothing
        var output = new CompletionOutput("cmpl-4", "opt-tiny", 0, Factory);
        var rest = Texts(output.Chunks(ResultLine(ids, Text, "length"), includeUsage: false)).ToList();
        var whole = Enumerable.Range(0, ids.Length).Count(i => i == ids.Length - 1 || !Codec.Decode(ids[..(i + 1)]).EndsWith('\uFFFD'));
        Assert.Equal(whole, rest.Count);
        // The special token's chunk: after the chunks of the tokens before it that end a character.
        Assert.Equal("", rest[Enumerable.Range(0, 5).Count(i => !Codec.Decode(ids[..(i + 1)]).EndsWith('\uFFFD'))]);
        Assert.Equal(Text, string.Concat(rest));
    }

    [Fact]
    public void Text_that_could_begin_a_stop_sequence_waits_and_the_stop_never_goes_out()
    {
        var ids = Output(Text);
        var output = new CompletionOutput("cmpl-2", "opt-tiny", 0, Factory) { Stops = ["STOP"] };
        var cut = Text.IndexOf("STOP", StringComparison.Ordinal);
        // The scheduler stops the sequence at the token that completes the stop sequence.
        var last = Enumerable.Range(1, ids.Length).First(n => Codec.Decode(ids[..n]).Contains("STOP", StringComparison.Ordinal));
        var live = string.Concat(Texts(output.LiveChunks(0, ids[..last])));
        Assert.Equal(Text[..cut], live);
        var rest = Texts(output.Chunks(ResultLine(ids[..last], Text[..cut], "stop"), includeUsage: false)).ToList();
        Assert.Equal([""], rest);
    }

    [Fact]
    public void A_result_that_does_not_begin_with_the_streamed_tokens_is_refused()
    {
        var ids = Output(Text);
        var output = new CompletionOutput("cmpl-3", "opt-tiny", 0, Factory);
        _ = output.LiveChunks(0, ids[..5]).ToList();
        var other = ids.ToArray();
        other[2] = other[2] == 100 ? 101 : 100;
        var error = Assert.Throws<InvalidOperationException>(() => output.Chunks(ResultLine(other, Codec.Decode(other), "length"), false).ToList());
        Assert.Contains("5 tokens streamed", error.Message);
    }

    private static int[] Output(string text) => [.. Codec.Encode(text).Skip(1)]; // without the BOS the encoder prepends

    private static IEnumerable<string> Texts(IEnumerable<JsonObject> chunks) =>
        chunks.Select(c => c["choices"]![0]!["text"]!.GetValue<string>());

    private static string ResultLine(int[] outputIds, string text, string finish) => JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["text"] = text, ["finish_reason"] = finish, ["prompt_ids"] = new[] { 2 }, ["output_ids"] = outputIds,
    });
}
