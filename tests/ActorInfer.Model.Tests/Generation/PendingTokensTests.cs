using ActorInfer.Model.Generation;
using TorchSharp;

namespace ActorInfer.Model.Tests.Generation;

public class PendingTokensTests
{
    private static SequenceState Sequence(int maxTokens) =>
        new(new CompletionRequest { Prompt = Prompt.FromIds([2, 5]), MaxTokens = maxTokens, Temperature = 0, IgnoreEos = true }, [2, 5], seed: 1, eosTokenId: 2);

    /// <summary>Ready after a given number of questions: stands for a device copy still in flight.</summary>
    private sealed class CountingFence(int readyAfter) : IReadyFence
    {
        public int Questions { get; private set; }
        public bool IsReady => ++Questions >= readyAfter;

        public void Dispose()
        {
        }
    }

    [Fact]
    public void Greedy_tokens_wait_for_their_fence_and_land_with_their_log_probabilities()
    {
        var sequences = new[] { Sequence(3), Sequence(3) };
        using var logits = torch.tensor(new float[] { 0f, 3f, 1f, 2f, 5f, 0f, 0f, 1f }, [2, 4]);
        var fence = new CountingFence(readyAfter: 4);
        using var pending = TokenChooser.Launch(logits, sequences, _ => "", () => fence);
        Assert.Empty(sequences[0].OutputIds);
        Assert.False(pending.IsReady);
        Assert.Equal(2, pending.Complete());
        Assert.True(fence.Questions >= 4, "completion read the tokens before the fence was ready");
        Assert.Equal([1, 0], sequences.Select(s => s.OutputIds.Single()));
        var expected = (float)(3 - Math.Log(Math.Exp(0) + Math.Exp(3) + Math.Exp(1) + Math.Exp(2)));
        Assert.Equal(expected, sequences[0].OutputLogprobs.Single(), 4);
        // Completed once: a second completion appends nothing.
        Assert.Equal(0, pending.Complete());
    }

    [Fact]
    public void Abandoned_tokens_are_never_appended()
    {
        var sequences = new[] { Sequence(3) };
        using var logits = torch.tensor(new float[] { 0f, 3f, 1f, 2f }, [1, 4]);
        var told = new List<int>();
        var pending = TokenChooser.Launch(logits, sequences, _ => "", () => new CountingFence(readyAfter: 1)).Then(told.Add);
        pending.Dispose();
        Assert.Equal(0, pending.Complete());
        Assert.Empty(sequences[0].OutputIds);
        // Whoever waits for the step's end hears of it once, with nothing appended.
        Assert.Equal([0], told);
    }

    [Fact]
    public void A_token_outside_the_vocabulary_fails_the_completion_and_names_its_row()
    {
        var sequences = new[] { Sequence(3), Sequence(3) };
        // What a host read of a copy still in flight can see: bytes of something else.
        using var pending = new PendingTokens(sequences, _ => "", vocabulary: 4, torch.tensor(new long[] { 1, 1L << 40 }),
            torch.tensor(new float[] { -1f, -1f }), fence: null);
        var error = Assert.Throws<InvalidOperationException>(() => pending.Complete());
        Assert.Contains("row 1 of 2", error.Message);
        Assert.Contains("outside the vocabulary of 4", error.Message);
        Assert.All(sequences, s => Assert.Empty(s.OutputIds));
    }
}
