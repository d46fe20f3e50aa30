using static TorchSharp.torch;

namespace ActorInfer.Model.Layers;

/// <summary>
/// FlexGen's 4-bit group-wise compression of the KV cache. Each token's key (or value) row of hidden size is cut
/// into groups of <see cref="GroupSizeFor"/> consecutive values (64 where the hidden size allows); a group keeps
/// its minimum and step (range / 15) in the model's dtype and every value as a 4-bit code, round((x - min) / step).
/// Compressed rows are token-major, [tokens, batch, hidden / 2] codes and [tokens, batch, groups, 2] ranges, so a
/// step's new entries are one contiguous write and a prefix is one contiguous read. Each row is compressed on its
/// own: the result does not depend on the batch or padding a token was computed in.
/// </summary>
public static class CacheCompression
{
    public const int MaxGroupSize = 64;
    private const int Levels = 15;

    /// <summary>The group size for a hidden size: 64 where it divides it, otherwise their largest even common divisor.</summary>
    public static int GroupSizeFor(long hiddenSize)
    {
        if (hiddenSize <= 0 || hiddenSize % 2 != 0)
            throw new ArgumentException($"a compressed cache needs an even hidden size, got {hiddenSize}");
        var size = (int)GreatestCommonDivisor(hiddenSize, MaxGroupSize);
        return size;
    }

    public static int GroupsFor(long hiddenSize) => (int)(hiddenSize / GroupSizeFor(hiddenSize));

    /// <summary>Bytes of one compressed token row (codes plus each group's minimum and step).</summary>
    public static long RowBytes(long hiddenSize, long elementSize) => hiddenSize / 2 + GroupsFor(hiddenSize) * 2 * elementSize;

    /// <summary>
    /// Compresses keys or values [B, heads, T, head_dim] into token-major codes [T, B, hidden / 2] (bytes) and
    /// ranges [T, B, groups, 2] (minimum, step; the input's dtype), on the input's device.
    /// </summary>
    public static (Tensor Codes, Tensor Ranges) Compress(Tensor x)
    {
        using var scope = NewDisposeScope();
        long batch = x.size(0), heads = x.size(1), tokens = x.size(2), headDim = x.size(3);
        var hidden = heads * headDim;
        var groupSize = GroupSizeFor(hidden);
        var groups = hidden / groupSize;
        // In the input's dtype: a float16 prompt's float32 copy would double the temporaries the device must hold.
        var rows = x.permute(2, 0, 1, 3).reshape(tokens, batch, groups, groupSize);
        var minimum = rows.amin([-1], keepdim: true);
        var ranges = cat([minimum, (rows.amax([-1], keepdim: true) - minimum) / Levels], -1);
        // Codes are chosen against the minimum and step that decompression will use.
        var step = ranges.narrow(-1, 1, 1).clamp_min(x.dtype is ScalarType.Float32 or ScalarType.Float64 ? float.Epsilon : 1e-7);
        var codes = (rows - minimum).div_(step).round_().clamp_(0, Levels).to(ScalarType.Byte);
        var half = groupSize / 2;
        var packed = codes.narrow(-1, half, half).mul(16).add_(codes.narrow(-1, 0, half)).reshape(tokens, batch, hidden / 2);
        return (packed.MoveToOuterDisposeScope(), ranges.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Expands codes [T, B, hidden / 2] and ranges [T, B, groups, 2] into <paramref name="destination"/>
    /// [B, heads, T, head_dim] (any strides; its dtype is the ranges'): each code is widened in place, scaled by
    /// its group's step and shifted by its minimum.
    /// </summary>
    public static void DecompressInto(Tensor codes, Tensor ranges, Tensor destination)
    {
        if (destination.device_type == TorchSharp.DeviceType.CUDA && CacheCompressionCuda.TryDecompressInto(codes, ranges, destination, GroupSizeFor(destination.size(1) * destination.size(3))))
            return;
        DecompressByOperations(codes, ranges, destination);
    }

    /// <summary>
    /// <see cref="DecompressInto"/> by libtorch's operations: a code widened into the destination, times its step (rounded to
    /// the dtype), plus its minimum (rounded). Four passes over the destination; on CUDA one kernel does the same arithmetic
    /// in one (<see cref="CacheCompressionCuda"/>).
    /// </summary>
    internal static void DecompressByOperations(Tensor codes, Tensor ranges, Tensor destination)
    {
        using var scope = NewDisposeScope();
        long tokens = codes.size(0), batch = codes.size(1), heads = destination.size(1), headDim = destination.size(3);
        var hidden = heads * headDim;
        var groupSize = GroupSizeFor(hidden);
        var groups = hidden / groupSize;
        var half = groupSize / 2;
        // Token-major [T, B, groups, group] over the destination itself where a group stays within a head; else a scratch.
        var inPlace = headDim % groupSize == 0;
        var tokenMajor = destination.permute(2, 0, 1, 3);
        var target = inPlace
            ? tokenMajor.view(tokens, batch, heads, headDim / groupSize, groupSize)
            : empty([tokens, batch, groups, groupSize], dtype: destination.dtype, device: destination.device);
        long[] codeShape = inPlace ? [tokens, batch, heads, headDim / groupSize, half] : [tokens, batch, groups, half];
        long[] rangeShape = inPlace ? [tokens, batch, heads, headDim / groupSize, 1] : [tokens, batch, groups, 1];
        var grouped = codes.view(codeShape);
        target.narrow(-1, 0, half).copy_(grouped.bitwise_and(15));
        target.narrow(-1, half, half).copy_(grouped.bitwise_right_shift(4));
        target.mul_(ranges.narrow(-1, 1, 1).reshape(rangeShape)).add_(ranges.narrow(-1, 0, 1).reshape(rangeShape));
        if (!inPlace) tokenMajor.copy_(target.view(tokens, batch, heads, headDim));
    }

    /// <summary>Codes and ranges expanded into a new [B, heads, T, head_dim] tensor of the ranges' dtype.</summary>
    public static Tensor Decompress(Tensor codes, Tensor ranges, long heads, long headDim)
    {
        var destination = empty([codes.size(1), heads, codes.size(0), headDim], dtype: ranges.dtype, device: codes.device);
        DecompressInto(codes, ranges, destination);
        return destination;
    }

    private static long GreatestCommonDivisor(long a, long b)
    {
        while (b != 0) (a, b) = (b, a % b);
        return a;
    }
}

/// <summary>
/// A compressed cache's first positions as <see cref="CacheCompression"/> stores them: key and value codes [L, B, hidden / 2]
/// and ranges [L, B, groups, 2] (each a prefix of a longer one is fine).
/// </summary>
public sealed record CacheCodes(Tensor KeyCodes, Tensor KeyRanges, Tensor ValueCodes, Tensor ValueRanges);

