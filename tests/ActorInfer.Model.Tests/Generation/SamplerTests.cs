using ActorInfer.Model.Generation;

namespace ActorInfer.Model.Tests.Generation;

public class SamplerTests
{
    private static readonly float[] Logits = [0.1f, 2.0f, 1.5f, -1.0f, 1.9f];

    [Fact]
    public void Zero_temperature_is_argmax() => Assert.Equal(1, Sampler.Sample(Logits, 0, 0, 1, seed: 5, step: 0));

    [Fact]
    public void Top_k_of_one_is_argmax_whatever_the_seed()
    {
        for (var seed = 0; seed < 50; seed++)
            Assert.Equal(1, Sampler.Sample(Logits, 1.0, 1, 1.0, seed, step: seed % 7));
    }

    [Fact]
    public void Tiny_top_p_keeps_only_the_most_likely_token()
    {
        for (var seed = 0; seed < 50; seed++)
            Assert.Equal(1, Sampler.Sample(Logits, 1.0, 0, 0.01, seed, step: 3));
    }

    [Fact]
    public void Same_seed_and_step_draw_the_same_token_and_steps_differ()
    {
        var draws = Enumerable.Range(0, 200).Select(step => Sampler.Sample(Logits, 1.0, 0, 1.0, seed: 42, step)).ToArray();
        var again = Enumerable.Range(0, 200).Select(step => Sampler.Sample(Logits, 1.0, 0, 1.0, seed: 42, step)).ToArray();
        Assert.Equal(draws, again);
        Assert.True(draws.Distinct().Count() >= 3, "sampling at temperature 1 should visit several tokens");
    }

    [Fact]
    public void Frequencies_follow_the_softmax()
    {
        var counts = new int[Logits.Length];
        const int n = 20000;
        for (var step = 0; step < n; step++) counts[Sampler.Sample(Logits, 1.0, 0, 1.0, seed: 7, step)]++;
        var max = Logits.Max();
        var weights = Logits.Select(l => Math.Exp(l - max)).ToArray();
        var total = weights.Sum();
        for (var i = 0; i < Logits.Length; i++)
            Assert.InRange(counts[i] / (double)n, weights[i] / total - 0.02, weights[i] / total + 0.02);
    }

    [Fact]
    public void Top_k_never_draws_outside_the_k_best()
    {
        for (var step = 0; step < 500; step++)
            Assert.Contains(Sampler.Sample(Logits, 1.5, 2, 1.0, seed: 3, step), new[] { 1, 4 });
    }

    [Fact]
    public void Uniform_draws_are_in_the_unit_interval()
    {
        for (var step = 0; step < 1000; step++)
            Assert.InRange(Sampler.Uniform(-12345, step), 0.0, 0.9999999999);
    }
}
