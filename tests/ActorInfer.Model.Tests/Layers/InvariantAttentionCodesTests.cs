using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ActorInfer.Model.Layers;
using static TorchSharp.torch;

namespace ActorInfer.Model.Tests.Layers;

/// <summary>
/// Attention on the CPU read straight from a 4-bit compressed cache's codes gives the bits of expanding the cache (by
/// libtorch's operations) and attending over it, and its exact roundings agree with .NET's conversions everywhere.
/// </summary>
public sealed class InvariantAttentionCodesTests
{
    /// <summary>
    /// Each type; heads of 128, 64 and 32 (groups of 64 and 32); key/value heads shared by 2 to 16 query heads (chunks of whole
    /// sharing heads: nine of twelve, then three); paddings, one sequence attending only its new token; codes that are a prefix
    /// of a longer cache; tiny values (float16 subnormals) and a group spanning 65,504, whose expansion overflows to infinity.
    /// </summary>
    [Theory]
    [InlineData(ScalarType.Float16, 4, 4, 128)]
    [InlineData(ScalarType.Float16, 8, 2, 64)]
    [InlineData(ScalarType.Float16, 3, 3, 32)]
    [InlineData(ScalarType.BFloat16, 4, 2, 128)]
    [InlineData(ScalarType.BFloat16, 2, 1, 64)]
    [InlineData(ScalarType.BFloat16, 12, 4, 64)]
    [InlineData(ScalarType.Float16, 16, 1, 64)]
    [InlineData(ScalarType.Float32, 4, 4, 64)]
    [InlineData(ScalarType.Float32, 2, 1, 128)]
    public void Codes_give_the_bits_of_expanding_then_attending(ScalarType type, int heads, int kvHeads, int dim)
    {
        var hidden = kvHeads * dim;
        if (!Avx512F.IsSupported)
        {
            Assert.False(InvariantAttention.AttendsCodes(dim, hidden));
            return;
        }
        Assert.True(InvariantAttention.AttendsCodes(dim, hidden), $"heads of {dim} in {hidden} are not attended from codes");
        const int b = 4, capacity = 80, length = 61;
        var generator = new TorchSharp.torch.Generator((ulong)(5 + dim + heads));
        using var keys = (randn([b, kvHeads, length, dim], generator: generator) * 3).to_type(type);
        using var values = (randn([b, kvHeads, length, dim], generator: generator) * 3).to_type(type);
        keys[1, 0, TensorIndex.Slice(10, 20)] = keys[1, 0, TensorIndex.Slice(10, 20)] * 1e-6;
        values[1, 0, TensorIndex.Slice(10, 20)] = values[1, 0, TensorIndex.Slice(10, 20)] * 1e-6;
        using var q = randn([b, heads, 1, dim], generator: generator).to_type(type);
        using var newKeys = randn([b, kvHeads, 1, dim], generator: generator).to_type(type);
        using var newValues = randn([b, kvHeads, 1, dim], generator: generator).to_type(type);
        int[] starts = [0, 9, 40, length];
        var (prefix, reference) = Compressed(keys, values, capacity, length);
        using var expected = Expanded(q, prefix, reference, newKeys, newValues, starts);
        using var actual = InvariantAttention.DecodeCodes(q, prefix, newKeys, newValues, starts);
        Assert.Equal(expected.shape, actual.shape);
        Assert.False(expected.isnan().any().item<bool>());
        Assert.True(actual.equal(expected).all().item<bool>(), $"{type}, {heads}/{kvHeads} heads of {dim}: {actual.ne(expected).sum().item<long>()} values differ");

        if (type != ScalarType.Float16) return;
        // A value group spanning 65504: its step (4368) times 15 rounds to float16 as infinity, and the sequence's context is
        // infinite or NaN in that dimension, alike either way.
        values[2, 0, 45, 0] = 32752f;
        values[2, 0, 45, 1] = -32752f;
        var (wide, wideReference) = Compressed(keys, values, capacity, length);
        using var expectedWide = Expanded(q, wide, wideReference, newKeys, newValues, starts);
        using var actualWide = InvariantAttention.DecodeCodes(q, wide, newKeys, newValues, starts);
        Assert.True(expectedWide.isinf().any().item<bool>() || expectedWide.isnan().any().item<bool>());
        Assert.True(actualWide.isnan().equal(expectedWide.isnan()).all().item<bool>());
        Assert.True(actualWide.nan_to_num().equal(expectedWide.nan_to_num()).all().item<bool>());
    }

    [Fact]
    public void Heads_whose_groups_cross_them_are_not_attended_from_codes()
    {
        // 80-wide heads in 2,560 (groups of 64 cross heads) and 16-wide heads: expanded instead.
        Assert.False(InvariantAttention.AttendsCodes(80, 2560));
        Assert.False(InvariantAttention.AttendsCodes(16, 96));
    }

    [Fact]
    public void Bad_codes_get_errors_that_name_the_shape()
    {
        if (!Avx512F.IsSupported) return;
        using var keys = randn([2, 2, 10, 64]).to_type(ScalarType.Float16);
        var (prefix, _) = Compressed(keys, keys, 12, 10);
        using var q = randn([2, 2, 1, 64]).to_type(ScalarType.Float16);
        using var one = randn([2, 2, 1, 64]).to_type(ScalarType.Float16);
        var error = Assert.Throws<ArgumentException>(() => InvariantAttention.DecodeCodes(q, prefix, one, one, [0, 11]));
        Assert.Contains("sequence 1 starts at 11", error.Message);
        var shortRanges = prefix with { ValueRanges = prefix.ValueRanges.narrow(0, 0, 9) };
        error = Assert.Throws<ArgumentException>(() => InvariantAttention.DecodeCodes(q, shortRanges, one, one, [0, 0]));
        Assert.Contains("values' ranges must be [10, 2, 2, 2]", error.Message);
        using var floats = one.to_type(ScalarType.Float32);
        Assert.Throws<ArgumentException>(() => InvariantAttention.DecodeCodes(q, prefix, floats, floats, [0, 0]));
    }

    /// <summary>
    /// Every product of a 4-bit code and a non-negative float16 step, and a million sums of two float16 values, round to
    /// float16 as .NET's conversion rounds them (subnormals, overflow to infinity, ties to even among them).
    /// </summary>
    [Fact]
    public void Products_and_sums_of_float16_values_round_as_the_conversion_rounds()
    {
        if (!Avx512F.IsSupported) return;
        var inputs = new List<float>();
        for (var bits = 0; bits <= 0x7C00; bits++)
        {
            var step = (float)BitConverter.UInt16BitsToHalf((ushort)bits);
            for (var code = 0; code < 16; code++) inputs.Add(code * step);
        }
        var random = new Random(3);
        float Any() => (float)BitConverter.UInt16BitsToHalf((ushort)random.Next(0, 0x10000));
        for (var i = 0; i < 1_000_000; i++) inputs.Add(Any() + Any());
        inputs.AddRange([float.NaN, float.PositiveInfinity, float.NegativeInfinity, 65519.99f, 65520f, -65520f, 5.9604645e-8f, -5.9604645e-8f, -0f]);
        while (inputs.Count % 16 != 0) inputs.Add(1f);
        var values = inputs.ToArray();
        for (var i = 0; i < values.Length; i += 16)
        {
            var rounded = InvariantAttentionRows.RoundToHalf(Vector512.Create(values, i));
            for (var l = 0; l < 16; l++)
            {
                var expected = (float)(Half)values[i + l];
                var actual = rounded.GetElement(l);
                Assert.True(float.IsNaN(expected) ? float.IsNaN(actual) : BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual),
                    $"{values[i + l]:R} rounded to {actual:R}, expected {expected:R}");
            }
        }
    }

    [Fact]
    public void Floats_round_to_bfloat16_as_one_at_a_time()
    {
        if (!Avx512F.IsSupported) return;
        var random = new Random(4);
        var values = new float[1 << 20];
        for (var i = 0; i < values.Length; i++) values[i] = BitConverter.Int32BitsToSingle(random.Next() ^ (random.Next(2) << 31));
        values[0] = float.NaN;
        values[1] = float.PositiveInfinity;
        values[2] = BitConverter.Int32BitsToSingle(0x3F808000); // a tie, to even
        values[3] = BitConverter.Int32BitsToSingle(0x3F818000); // a tie, up to even
        for (var i = 0; i < values.Length; i += 16)
        {
            var rounded = InvariantAttentionRows.RoundToBFloat16(Vector512.Create(values, i));
            for (var l = 0; l < 16; l++)
                Assert.Equal(InvariantAttention.ToBFloat16(values[i + l]), (ushort)(BitConverter.SingleToInt32Bits(rounded.GetElement(l)) >>> 16));
        }
    }

    /// <summary>
    /// Keys and values compressed as the runtime stores them, into codes a prefix of a <paramref name="capacity"/>-token cache,
    /// and the same codes expanded by libtorch's operations (the reference).
    /// </summary>
    private static (CacheCodes Prefix, (Tensor Keys, Tensor Values) Expanded) Compressed(Tensor keys, Tensor values, int capacity, int length)
    {
        var (keyCodes, keyRanges) = CacheCompression.Compress(keys);
        var (valueCodes, valueRanges) = CacheCompression.Compress(values);
        Tensor Longer(Tensor t)
        {
            var full = zeros([capacity, .. t.shape[1..]], t.dtype);
            full.narrow(0, 0, length).copy_(t);
            return full.narrow(0, 0, length);
        }
        var prefix = new CacheCodes(Longer(keyCodes), Longer(keyRanges), Longer(valueCodes), Longer(valueRanges));
        var expandedKeys = empty_like(keys);
        var expandedValues = empty_like(values);
        CacheCompression.DecompressByOperations(keyCodes, keyRanges, expandedKeys);
        CacheCompression.DecompressByOperations(valueCodes, valueRanges, expandedValues);
        return (prefix, (expandedKeys, expandedValues));
    }

    /// <summary>Attention over the expanded cache with the new key and value after it, as the runtime ran it before.</summary>
    private static Tensor Expanded(Tensor q, CacheCodes prefix, (Tensor Keys, Tensor Values) expanded, Tensor newKeys, Tensor newValues, int[] starts)
    {
        using var keys = cat([expanded.Keys, newKeys], 2);
        using var values = cat([expanded.Values, newValues], 2);
        return InvariantAttention.Decode(q, keys, values, starts);
    }
}
