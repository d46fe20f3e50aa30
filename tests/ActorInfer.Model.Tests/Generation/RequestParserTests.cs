using ActorInfer.Model.Generation;

namespace ActorInfer.Model.Tests.Generation;

public class RequestParserTests
{
    [Fact]
    public void Parses_every_supported_field()
    {
        var r = CompletionRequestParser.Parse("""
            {"id":"a","model":"m","prompt":[2,5,7],"max_tokens":4,"temperature":0.5,"top_p":0.9,"top_k":3,
             "seed":11,"stop":["x","y"],"echo":true,"logprobs":1,"n":1,"stream":false,"user":"u","ignore_eos":true}
            """);
        Assert.Equal("a", r.Id);
        Assert.Equal([2, 5, 7], r.Prompt.TokenIds!);
        Assert.Equal(4, r.MaxTokens);
        Assert.Equal(0.5, r.Temperature);
        Assert.Equal(0.9, r.TopP);
        Assert.Equal(3, r.TopK);
        Assert.Equal(11, r.Seed);
        Assert.Equal(["x", "y"], r.Stop);
        Assert.True(r.Echo);
        Assert.Equal(1, r.Logprobs);
        Assert.True(r.IgnoreEos);
    }

    [Fact]
    public void Defaults_are_openai_defaults()
    {
        var r = CompletionRequestParser.Parse("""{"prompt":"hi"}""");
        Assert.Equal("hi", r.Prompt.Text);
        Assert.Equal(16, r.MaxTokens);
        Assert.Equal(1.0, r.Temperature);
        Assert.Equal(1.0, r.TopP);
        Assert.Empty(r.Stop);
        Assert.False(r.Echo);
        Assert.Null(r.Logprobs);
    }

    [Fact]
    public void A_single_stop_string_is_accepted() =>
        Assert.Equal(["\n"], CompletionRequestParser.Parse("""{"prompt":"a","stop":"\n"}""").Stop);

    [Theory]
    [InlineData("""{"prompt":"a","max_tokens":0}""", "max_tokens")]
    [InlineData("""{"prompt":"a","max_tokens":"3"}""", "max_tokens")]
    [InlineData("""{"prompt":"a","max_tokens":1.5}""", "max_tokens")]
    [InlineData("""{"prompt":"a","temperature":2.5}""", "temperature")]
    [InlineData("""{"prompt":"a","temperature":-0.1}""", "temperature")]
    [InlineData("""{"prompt":"a","top_p":0}""", "top_p")]
    [InlineData("""{"prompt":"a","top_p":1.2}""", "top_p")]
    [InlineData("""{"prompt":"a","top_k":-1}""", "top_k")]
    [InlineData("""{"prompt":"a","logprobs":9}""", "logprobs")]
    [InlineData("""{"prompt":"a","n":2}""", "n")]
    [InlineData("""{"prompt":"a","echo":"yes"}""", "echo")]
    [InlineData("""{"prompt":"a","stop":[1]}""", "stop")]
    [InlineData("""{"prompt":"a","stop":["a","b","c","d","e"]}""", "stop")]
    [InlineData("""{"prompt":"a","seed":"x"}""", "seed")]
    [InlineData("""{"prompt":"a","frequency_penality":1}""", "frequency_penality")]
    [InlineData("""{"prompt":""}""", "prompt")]
    [InlineData("""{"prompt":[]}""", "prompt")]
    [InlineData("""{"prompt":[1,-2]}""", "prompt")]
    [InlineData("""{"prompt":[1,"x"]}""", "prompt")]
    [InlineData("""{"prompt":3}""", "prompt")]
    [InlineData("""{"max_tokens":3}""", "prompt")]
    [InlineData("""{"prompt":"a","id":5}""", "id")]
    public void Bad_fields_are_named(string json, string field)
    {
        var ex = Assert.Throws<RequestValidationException>(() => CompletionRequestParser.Parse(json));
        Assert.Equal(field, ex.Param);
        Assert.Contains(field, ex.Message);
    }

    [Theory]
    [InlineData("{not json")]
    [InlineData("[1,2]")]
    [InlineData("\"text\"")]
    public void Bodies_that_are_not_objects_are_refused(string json) =>
        Assert.Throws<RequestValidationException>(() => CompletionRequestParser.Parse(json));
}
