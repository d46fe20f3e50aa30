using ActorInfer.Model.Layers;
using static TorchSharp.torch;

namespace ActorInfer.Model.Tests.Layers;

public sealed class WeightCompressionTests
{
    [Fact]
    public void Matrices_are_compressed_and_vectors_and_odd_widths_are_not()
    {
        Assert.True(WeightCompression.Compresses([8192, 28672]));
        Assert.False(WeightCompression.Compresses([8192]));
        Assert.False(WeightCompression.Compresses([4, 15]));
        // Llama-3.1-70B's MLP projection: half a byte a value and a float16 minimum and step per group of 64.
        Assert.Equal(8192L * 28672 / 2 + 8192L * 28672 / 64 * 4, WeightCompression.StoredBytes([8192, 28672], 2, compress: true));
        Assert.Equal(8192L * 2, WeightCompression.StoredBytes([8192], 2, compress: true));
        Assert.Equal(8192L * 28672 * 2, WeightCompression.StoredBytes([8192, 28672], 2, compress: false));
    }

    [Theory]
    [InlineData(ScalarType.Float32, 96, 200)]
    [InlineData(ScalarType.Float16, 256, 48)]
    public void Every_value_comes_back_within_half_a_step_of_its_group(ScalarType dtype, long rows, long columns)
    {
        using var scope = NewDisposeScope();
        var generator = new TorchSharp.torch.Generator(11);
        var weight = (randn([rows, columns], generator: generator) * 0.02).to(dtype);
        var (codes, ranges) = WeightCompression.Compress(weight);
        Assert.Equal([rows * columns / 2], codes.shape);
        Assert.Equal(ScalarType.Byte, codes.dtype);
        var groupSize = CacheCompression.GroupSizeFor(columns);
        Assert.Equal([rows * columns / groupSize, 2], ranges.shape);
        var expanded = WeightCompression.Decompress(codes, ranges, [rows, columns]);
        Assert.Equal(dtype, expanded.dtype);
        var step = ranges.narrow(-1, 1, 1).to(ScalarType.Float32).view(rows, columns / groupSize, 1);
        var error = (expanded.to(ScalarType.Float32) - weight.to(ScalarType.Float32)).view(rows, columns / groupSize, groupSize).abs();
        // Half a step, and (float16) a few roundings of values up to about 0.1, whose unit in the last place is 6e-5.
        var bound = step * 0.5 + (dtype == ScalarType.Float16 ? 2e-4 : 1e-7);
        Assert.True((error <= bound).all().item<bool>(), $"largest error {error.max().item<float>()} against steps up to {step.max().item<float>()}");
        Assert.True(expanded.isfinite().all().item<bool>());
    }

    [Fact]
    public void A_constant_group_comes_back_exactly()
    {
        using var scope = NewDisposeScope();
        var weight = full([4, 64], 0.25f);
        var (codes, ranges) = WeightCompression.Compress(weight);
        Assert.Equal(weight.data<float>().ToArray(), WeightCompression.Decompress(codes, ranges, [4, 64]).data<float>().ToArray());
    }

    [Fact]
    public void A_large_tensor_is_compressed_in_chunks_as_it_would_be_whole()
    {
        using var scope = NewDisposeScope();
        // More than a chunk of groups (2^20 of 64): the chunked result equals the reference computed row group by row group.
        var generator = new TorchSharp.torch.Generator(3);
        var weight = randn([(1L << 20) / 64 * 64 + 64, 64], generator: generator);
        var (codes, ranges) = WeightCompression.Compress(weight);
        var (tailCodes, tailRanges) = WeightCompression.Compress(weight.narrow(0, weight.size(0) - 64, 64).contiguous());
        Assert.True(codes.narrow(0, codes.size(0) - 64 * 32, 64 * 32).eq(tailCodes).all().item<bool>());
        Assert.True(ranges.narrow(0, ranges.size(0) - 64, 64).eq(tailRanges).all().item<bool>());
    }
}
