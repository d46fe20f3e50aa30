using ActorInfer.Model.Layers;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ActorInfer.Model.Tests.Layers;

/// <summary>Decoding attention by batched products gives what the fused kernel gives, over a prefix of a longer cache.</summary>
public sealed class AttendByProductsTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Matches_scaled_dot_product_attention_over_a_masked_cache_prefix(bool masked)
    {
        const int b = 5, h = 4, d = 16, capacity = 40, length = 23;
        var generator = new TorchSharp.torch.Generator(7);
        using var q = randn([b, h, 1, d], generator: generator);
        // A prefix of a cache with room for more tokens, as the runtime attends it: not contiguous.
        using var keyCache = randn([b, h, capacity, d], generator: generator);
        using var valueCache = randn([b, h, capacity, d], generator: generator);
        using var keys = keyCache.narrow(2, 0, length);
        using var values = valueCache.narrow(2, 0, length);
        using var mask = ones([b, 1, 1, length], ScalarType.Bool);
        if (masked)
        {
            // Left padding of different lengths, and the last two entries not yet written.
            for (var i = 0; i < b; i++)
                if (i > 0) mask[i, 0, 0, TensorIndex.Slice(0, i * 2)] = false;
            mask[TensorIndex.Colon, 0, 0, TensorIndex.Slice(length - 2, length)] = false;
        }
        var given = masked ? mask : null;

        using var expected4 = F.scaled_dot_product_attention(q, keys, values, given);
        using var expected = expected4.transpose(1, 2).reshape(b, 1, h * d);
        using var actual = AttentionMath.AttendByProducts(q, keys, values, given);

        Assert.Equal(new long[] { b, 1, h * d }, actual.shape);
        var difference = (actual - expected).abs().max().item<float>();
        Assert.True(difference < 1e-5f, $"largest difference {difference}");
        // The masked entries carry no weight: changing them changes nothing.
        if (masked)
        {
            keyCache[1, TensorIndex.Colon, 0] = 1000f;
            valueCache[TensorIndex.Colon, TensorIndex.Colon, length - 1] = 1000f;
            using var again = AttentionMath.AttendByProducts(q, keys, values, given);
            Assert.True((again - actual).abs().max().item<float>() == 0f);
            // The negated mask, given as a step keeps it, masks the same.
            using var excluded = mask.logical_not();
            using var byNegation = AttentionMath.AttendByProducts(q, keys, values, given, excluded);
            Assert.True((byNegation - again).abs().max().item<float>() == 0f);
        }
    }

    [Fact]
    public void Refuses_more_than_one_query_per_sequence()
    {
        using var q = zeros(2, 2, 3, 8);
        using var kv = zeros(2, 2, 3, 8);
        var error = Assert.Throws<ArgumentException>(() => AttentionMath.AttendByProducts(q, kv, kv, null));
        Assert.Contains("one query per sequence", error.Message);
    }
}
