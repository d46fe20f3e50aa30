using ActorInfer.Model.Layers;
using static TorchSharp.torch;

namespace ActorInfer.Model.Tests.Layers;

public sealed class CacheCompressionTests
{
    [Theory]
    [InlineData(7168, 64)]
    [InlineData(2560, 64)]
    [InlineData(96, 32)]
    [InlineData(20, 4)]
    public void The_group_size_is_64_where_the_hidden_size_allows(long hidden, int expected) =>
        Assert.Equal(expected, CacheCompression.GroupSizeFor(hidden));

    [Fact]
    public void An_odd_hidden_size_is_refused_by_name() =>
        Assert.Contains("even hidden size", Assert.Throws<ArgumentException>(() => CacheCompression.GroupSizeFor(15)).Message);

    [Fact]
    public void Row_bytes_are_four_bits_a_value_plus_a_float16_minimum_and_step_per_group() =>
        Assert.Equal(7168 / 2 + 112 * 4, CacheCompression.RowBytes(7168, 2));

    /// <summary>Groups within a head (expanded in place) and groups across heads (expanded through a scratch).</summary>
    [Theory]
    [InlineData(4, 32)]
    [InlineData(2, 128)]
    public void Every_value_comes_back_within_half_a_step_of_its_group(int heads, int headDim)
    {
        using var scope = NewDisposeScope();
        var generator = new TorchSharp.torch.Generator(11);
        var x = randn([3, heads, 5, headDim], generator: generator) * 3;
        var (codes, ranges) = CacheCompression.Compress(x);
        var groups = heads * headDim / 64;
        Assert.Equal(new long[] { 5, 3, heads * headDim / 2 }, codes.shape);
        Assert.Equal(new long[] { 5, 3, groups, 2 }, ranges.shape);
        Assert.Equal(ScalarType.Byte, codes.dtype);
        var back = CacheCompression.Decompress(codes, ranges, heads, headDim);
        Assert.Equal(x.shape, back.shape);
        // Each group is 64 consecutive values of a token's row (heads x head_dim), token-major.
        var rows = x.permute(2, 0, 1, 3).reshape(5, 3, groups, 64);
        var step = (rows.amax([-1], keepdim: true) - rows.amin([-1], keepdim: true)) / 15;
        var error = (back.permute(2, 0, 1, 3).reshape(5, 3, groups, 64) - rows).abs();
        Assert.True((error <= step / 2 + 1e-5).all().item<bool>(), $"largest error {error.max().item<float>()}");
        Assert.True(error.max().item<float>() > 0, "compression lost nothing: it did not compress");
    }

    [Fact]
    public void Codes_pack_two_values_a_byte_and_a_constant_group_comes_back_exactly()
    {
        using var scope = NewDisposeScope();
        // One token, one sequence, one head of 4: the group is [0, 1, 2, 15] (step 1): codes 0, 1, 2, 15.
        var x = tensor(new float[] { 0, 1, 2, 15 }).reshape(1, 1, 1, 4);
        var (codes, ranges) = CacheCompression.Compress(x);
        Assert.Equal(new byte[] { 2 * 16 + 0, 15 * 16 + 1 }, codes.reshape(-1).data<byte>().ToArray());
        Assert.Equal(new float[] { 0, 1 }, ranges.reshape(-1).data<float>().ToArray());
        var constant = full(new long[] { 2, 1, 3, 4 }, 2.5f);
        var (c2, r2) = CacheCompression.Compress(constant);
        Assert.Equal(constant.data<float>().ToArray(), CacheCompression.Decompress(c2, r2, 1, 4).contiguous().data<float>().ToArray());
    }
}
