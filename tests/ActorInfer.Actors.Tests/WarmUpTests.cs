using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Node;
using ActorInfer.Model.Config;

namespace ActorInfer.Actors.Tests;

/// <summary>The warm-up job's requests: greedy, the model's BOS then random ids of its vocabulary, within its context.</summary>
public class WarmUpTests
{
    private static readonly ModelConfig Opt = OptConfigs.Resolve("opt-125m");

    [Fact]
    public void Requests_have_the_asked_lengths_start_with_the_bos_and_stay_in_the_vocabulary()
    {
        var items = WarmUp.Requests(new WarmUpSettings(5, 300, 4), Opt);
        Assert.Equal(5, items.Count);
        Assert.Equal(5, items.Select(i => i.Key).Distinct().Count());
        foreach (var item in items)
        {
            var ids = item.Request.Prompt.TokenIds!;
            Assert.Equal(300, ids.Count);
            Assert.Equal(Opt.BosTokenId, ids[0]);
            Assert.All(ids.Skip(1), id => Assert.InRange(id, 3, Opt.VocabSize - 1));
            Assert.Equal(4, item.Request.MaxTokens);
            Assert.True(item.Request.IsGreedy && item.Request.IgnoreEos);
        }
        // The same requests every start (the shapes matter, not the ids; a fixed seed keeps starts alike).
        Assert.Equal(items[1].Request.Prompt.TokenIds, WarmUp.Requests(new WarmUpSettings(5, 300, 4), Opt)[1].Request.Prompt.TokenIds);
    }

    [Theory]
    [InlineData(512, 8, 16, 8, 8)]
    [InlineData(4, 100, 16, 1, 15)]
    [InlineData(10, 6, 16, 10, 6)]
    public void Lengths_are_capped_to_the_context_generation_first(int prompt, int generate, int context, int expectedPrompt, int expectedGenerate)
    {
        var item = WarmUp.Requests(new WarmUpSettings(1, prompt, generate), Opt with { MaxPositionEmbeddings = context })[0];
        Assert.Equal(expectedPrompt, item.Request.Prompt.TokenIds!.Count);
        Assert.Equal(expectedGenerate, item.Request.MaxTokens);
    }

    [Fact]
    public void No_requests_no_warm_up() => Assert.Empty(WarmUp.Requests(new WarmUpSettings(0, 512, 8), Opt));
}
