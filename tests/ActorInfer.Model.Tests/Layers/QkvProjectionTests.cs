using ActorInfer.Model.Layers;
using static TorchSharp.torch;

namespace ActorInfer.Model.Tests.Layers;

/// <summary>
/// The stacked Q, K and V map gives, bit for bit on the CPU in single precision, what three maps gave: one product of
/// [q + k + v, in] computes each output as the three products did (rows do not mix), and the heads of a decoding step,
/// views instead of copies, hold the same values and attend the same.
/// </summary>
public sealed class QkvProjectionTests
{
    [Theory]
    [InlineData(64, 4, 4, 32, 1, true, true)]       // the CPU proxy's width, one decoding token
    [InlineData(64, 4, 4, 32, 9, true, true)]       // a prefill
    [InlineData(768, 12, 12, 32, 1, true, true)]    // OPT-125m's width
    [InlineData(2048, 32, 32, 16, 1, true, true)]   // OPT-1.3b's width
    [InlineData(4096, 32, 8, 16, 1, false, true)]   // Llama-3-8B's heads: grouped queries, no biases
    [InlineData(128, 8, 2, 16, 1, false, true)]
    [InlineData(80, 6, 2, 7, 6, false, true)]       // the test Llama's odd width: a prefill projects apart
    [InlineData(64, 4, 4, 3, 1, true, true)]        // Qwen-like: Q, K and V biases, no grouping
    // The test Llama's odd width (80 in, 96 + 32 + 32 out) in one product rounds some queries differently from one of 96
    // out, by one unit in the last place: the product's blocking depends on its output width there.
    [InlineData(80, 6, 2, 7, 1, false, false)]
    public void Stacked_projections_equal_three_apart(int hidden, int heads, int kvHeads, int batch, int tokens, bool bias, bool exact)
    {
        var headDim = hidden / heads;
        var generator = new Generator(11);
        using var scope = NewDisposeScope();
        var input = randn([batch, tokens, hidden], generator: generator);
        LinearWeights Random(long rows) =>
            new(randn([rows, hidden], generator: generator).mul_(0.05), bias ? randn([rows], generator: generator).mul_(0.02) : null);
        var q = Random(heads * headDim);
        var k = Random(kvHeads * headDim);
        var v = Random(kvHeads * headDim);
        Tensor Apart(LinearWeights w, int n) =>
            Products.Fused(input, w.Weight, w.Bias).view(batch, tokens, n, headDim).transpose(1, 2).contiguous();
        var (expectedQ, expectedK, expectedV) = (Apart(q, heads), Apart(k, kvHeads), Apart(v, kvHeads));

        var stacked = new LinearWeights(cat([q.Weight, k.Weight, v.Weight], 0), bias ? cat([q.Bias!, k.Bias!, v.Bias!], 0) : null);
        using var actual = QueryKeyValue.Project(input, [stacked], heads, kvHeads, headDim);
        // Three maps apart (a layer whose Q, K and V the runtime placed on different tiers) project as they always did.
        using (var apart = QueryKeyValue.Project(input, [q, k, v], heads, kvHeads, headDim))
            Assert.True(Same(expectedQ, apart.Queries) && Same(expectedK, apart.Keys) && Same(expectedV, apart.Values), "three maps apart differ");

        if (!exact)
        {
            Assert.True(expectedQ.allclose(actual.Queries, rtol: 1e-6, atol: 1e-6), "queries differ by more than rounding");
            Assert.True(expectedK.allclose(actual.Keys, rtol: 1e-6, atol: 1e-6), "keys differ by more than rounding");
            Assert.True(expectedV.allclose(actual.Values, rtol: 1e-6, atol: 1e-6), "values differ by more than rounding");
            return;
        }
        Assert.True(Same(expectedQ, actual.Queries), "queries differ");
        Assert.True(Same(expectedK, actual.Keys), "keys differ");
        Assert.True(Same(expectedV, actual.Values), "values differ");
        // Strided queries attend as contiguous ones do, over a cache as the runtime holds it.
        var keys = AttentionMath.RepeatKeyValueHeads(expectedK, heads);
        var values = AttentionMath.RepeatKeyValueHeads(expectedV, heads);
        var fromCopies = AttentionMath.Attend(expectedQ, keys, values, null, causal: tokens > 1);
        var fromViews = AttentionMath.Attend(actual.Queries, keys, values, null, causal: tokens > 1);
        Assert.True(Same(fromCopies, fromViews), "attention over strided queries differs");
    }

    private static bool Same(Tensor a, Tensor b) => a.Dims().SequenceEqual(b.Dims()) && a.eq(b).all().item<bool>();

}
