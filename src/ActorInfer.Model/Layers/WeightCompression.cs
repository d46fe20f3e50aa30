using static TorchSharp.torch;

namespace ActorInfer.Model.Layers;

/// <summary>
/// FlexGen's 4-bit group-wise compression applied to weights (<c>--compress-weight</c>), the scheme the KV cache has
/// (<see cref="CacheCompression"/>): a weight of two or more dimensions is cut into groups of
/// <see cref="CacheCompression.GroupSizeFor"/> consecutive values along its last dimension (64 where it allows); a
/// group keeps its minimum and step (range / 15) in the weight's dtype and each value as a 4-bit code,
/// round((x - min) / step). Codes are packed two to a byte, the first half of a group in the low nibbles and the second
/// half in the high ones: [elements / 2] bytes and [groups, 2] ranges (minimum, step). Vectors (norms, biases) and
/// tensors whose last dimension is odd stay as they are.
/// </summary>
public static class WeightCompression
{
    private const int Levels = 15;

    // Groups compressed at a time: bounds the temporaries of a large tensor (an embedding of a billion values) to a few
    // hundred megabytes on the device.
    private const long ChunkGroups = 1L << 20;

    /// <summary>Whether a weight of this shape is stored compressed.</summary>
    public static bool Compresses(IReadOnlyList<long> shape) => shape.Count >= 2 && shape[^1] > 0 && shape[^1] % 2 == 0;

    public static long Elements(IReadOnlyList<long> shape) => shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>Groups of a compressed weight of this shape.</summary>
    public static long Groups(IReadOnlyList<long> shape) => Elements(shape) / CacheCompression.GroupSizeFor(shape[^1]);

    /// <summary>The shape of the codes of a compressed weight: one byte per two values.</summary>
    public static long[] CodesShape(IReadOnlyList<long> shape) => [Elements(shape) / 2];

    /// <summary>The shape of the ranges of a compressed weight: each group's minimum and step.</summary>
    public static long[] RangesShape(IReadOnlyList<long> shape) => [Groups(shape), 2];

    /// <summary>Bytes a weight of this shape occupies stored (compressed where <see cref="Compresses"/>).</summary>
    public static long StoredBytes(IReadOnlyList<long> shape, long elementSize, bool compress) =>
        compress && Compresses(shape) ? Elements(shape) / 2 + Groups(shape) * 2 * elementSize : Elements(shape) * elementSize;

    /// <summary>Codes [elements / 2] (bytes) and ranges [groups, 2] (the input's dtype) of a weight, on the input's device.</summary>
    public static (Tensor Codes, Tensor Ranges) Compress(Tensor weight)
    {
        var shape = weight.shape;
        if (!Compresses(shape)) throw new ArgumentException($"a weight of shape [{string.Join(", ", shape)}] is not compressed");
        var groupSize = CacheCompression.GroupSizeFor(shape[^1]);
        var half = groupSize / 2;
        var groups = Groups(shape);
        var codes = empty(CodesShape(shape), dtype: ScalarType.Byte, device: weight.device);
        var ranges = empty(RangesShape(shape), dtype: weight.dtype, device: weight.device);
        using var rowsAll = weight.contiguous().view(groups, groupSize);
        using var packedAll = codes.view(groups, half);
        var tiny = weight.dtype is ScalarType.Float32 or ScalarType.Float64 ? float.Epsilon : 1e-7;
        for (long start = 0; start < groups; start += ChunkGroups)
        {
            using var scope = NewDisposeScope();
            var count = Math.Min(ChunkGroups, groups - start);
            var rows = rowsAll.narrow(0, start, count);
            var minimum = rows.amin([-1], keepdim: true);
            var chunkRanges = ranges.narrow(0, start, count);
            chunkRanges.narrow(-1, 0, 1).copy_(minimum);
            chunkRanges.narrow(-1, 1, 1).copy_((rows.amax([-1], keepdim: true) - minimum).div_(Levels));
            // Codes are chosen against the minimum and step that expansion will use (the step as stored).
            var step = chunkRanges.narrow(-1, 1, 1).clamp_min(tiny);
            var levels = (rows - minimum).div_(step).round_().clamp_(0, Levels).to(ScalarType.Byte);
            packedAll.narrow(0, start, count).copy_(levels.narrow(-1, half, half).mul(16).add_(levels.narrow(-1, 0, half)));
        }
        return (codes, ranges);
    }

    /// <summary>
    /// Expands codes and ranges into <paramref name="destination"/> (contiguous, of the weight's shape and the ranges'
    /// dtype): each code widened in place, scaled by its group's step and shifted by its minimum.
    /// </summary>
    public static void DecompressInto(Tensor codes, Tensor ranges, Tensor destination)
    {
        if (destination.device_type == TorchSharp.DeviceType.CUDA
            && CacheCompressionCuda.TryDecompressWeight(codes, ranges, destination, CacheCompression.GroupSizeFor(destination.size(-1))))
            return;
        DecompressByOperations(codes, ranges, destination);
    }

    /// <summary><see cref="DecompressInto"/> by libtorch's operations (on CUDA one kernel does the same arithmetic: <see cref="CacheCompressionCuda"/>).</summary>
    internal static void DecompressByOperations(Tensor codes, Tensor ranges, Tensor destination)
    {
        using var scope = NewDisposeScope();
        var groupSize = CacheCompression.GroupSizeFor(destination.size(-1));
        var half = groupSize / 2;
        var groups = Groups(destination.shape);
        var target = destination.view(groups, groupSize);
        var grouped = codes.view(groups, half);
        target.narrow(-1, 0, half).copy_(grouped.bitwise_and(15));
        target.narrow(-1, half, half).copy_(grouped.bitwise_right_shift(4));
        target.mul_(ranges.narrow(-1, 1, 1)).add_(ranges.narrow(-1, 0, 1));
    }

    /// <summary>Codes and ranges expanded into a new tensor of <paramref name="shape"/> and the ranges' dtype.</summary>
    public static Tensor Decompress(Tensor codes, Tensor ranges, long[] shape)
    {
        var destination = empty(shape, dtype: ranges.dtype, device: codes.device);
        DecompressInto(codes, ranges, destination);
        return destination;
    }
}
