using System.Runtime.Intrinsics;
using ActorInfer.Model.Layers;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ActorInfer.Model.Tests.Layers;

/// <summary>
/// Batch-invariant decoding attention computes softmax attention, and gives a sequence the same bits alone, in a batch,
/// at any padding, over any prefix of a longer cache; batch-invariant products and prompt attention do the same for a
/// row and a prompt.
/// </summary>
public sealed class InvariantAttentionTests
{
    [Fact]
    public void Exp_is_within_two_units_in_the_last_place_of_the_library_exp()
    {
        Assert.Equal(1f, InvariantAttention.Exp(0f));
        Assert.Equal(0f, InvariantAttention.Exp(-200f));
        Assert.Equal(0f, InvariantAttention.Exp(float.NegativeInfinity));
        for (var x = -103.5f; x <= 0f; x += 0.0137f)
        {
            var expected = Math.Exp(x);
            var actual = InvariantAttention.Exp(x);
            var ulp = Math.Max(double.Epsilon, MathF.BitIncrement((float)expected) - (float)expected);
            Assert.True(Math.Abs(actual - expected) <= 2 * ulp, $"exp({x}) = {actual}, expected {expected}");
        }
    }

    /// <summary>Sixteen values at a time (AVX-512), exp gives the bits it gives one at a time, from 0 down past its floor.</summary>
    [Fact]
    public void Exp_sixteen_at_a_time_gives_the_bits_of_one_at_a_time()
    {
        if (!System.Runtime.Intrinsics.X86.Avx512F.IsSupported) return;
        var inputs = new List<float> { 0f, -0f, -1e-30f, -103.99f, -104f, -104.0001f, -200f, float.NegativeInfinity, float.NaN, -87.3f, -87.4f, -88.7f };
        for (var x = -105f; x <= 0f; x += 0.000731f) inputs.Add(x);
        var random = new Random(7);
        for (var i = 0; i < 100_000; i++) inputs.Add(-(float)(random.NextDouble() * 110));
        while (inputs.Count % 16 != 0) inputs.Add(-1f);
        for (var i = 0; i < inputs.Count; i += 16)
        {
            var sixteen = InvariantAttentionRows.Exp16(Vector512.Create(inputs.GetRange(i, 16).ToArray()));
            for (var j = 0; j < 16; j++)
            {
                var x = inputs[i + j];
                Assert.True(BitConverter.SingleToInt32Bits(InvariantAttention.Exp(x)) == BitConverter.SingleToInt32Bits(sixteen.GetElement(j)),
                    $"exp({x}): {sixteen.GetElement(j)} sixteen at a time, {InvariantAttention.Exp(x)} alone");
            }
        }
    }

    [Theory]
    [InlineData(ScalarType.Float32, 4, 4, 128)]
    [InlineData(ScalarType.Float32, 4, 2, 16)]
    [InlineData(ScalarType.Float16, 8, 2, 128)]
    [InlineData(ScalarType.Float32, 2, 1, 80)]
    [InlineData(ScalarType.BFloat16, 4, 4, 128)]
    public void Decode_is_softmax_attention_from_each_sequences_start(ScalarType type, int heads, int kvHeads, int dim)
    {
        const int b = 3, capacity = 70, length = 61;
        var generator = new TorchSharp.torch.Generator(11);
        using var q = randn([b, heads, 1, dim], generator: generator).to_type(type);
        using var keyCache = randn([b, kvHeads, capacity, dim], generator: generator).to_type(type);
        using var valueCache = randn([b, kvHeads, capacity, dim], generator: generator).to_type(type);
        using var keys = keyCache.narrow(2, 0, length);
        using var values = valueCache.narrow(2, 0, length);
        int[] starts = [0, 7, 60];
        using var actual = InvariantAttention.Decode(q, keys, values, starts);
        Assert.Equal(new long[] { b, 1, heads * dim }, actual.shape);
        using var mask = ones([b, 1, 1, length], ScalarType.Bool);
        for (var i = 0; i < b; i++)
            if (starts[i] > 0) mask[i, 0, 0, TensorIndex.Slice(0, starts[i])] = false;
        using var k64 = AttentionMath.RepeatKeyValueHeads(keys, heads).to_type(ScalarType.Float64);
        using var v64 = AttentionMath.RepeatKeyValueHeads(values, heads).to_type(ScalarType.Float64);
        using var expected4 = F.scaled_dot_product_attention(q.to_type(ScalarType.Float64), k64, v64, mask);
        using var expected = expected4.transpose(1, 2).reshape(b, 1, heads * dim);
        var difference = (actual.to_type(ScalarType.Float64) - expected).abs().max().item<double>();
        Assert.True(difference < type switch { ScalarType.Float16 => 2e-3, ScalarType.BFloat16 => 1.6e-2, _ => 2e-6 }, $"largest difference {difference}");
    }

    [Theory]
    [InlineData(ScalarType.Float32, 128)]
    [InlineData(ScalarType.Float16, 128)]
    [InlineData(ScalarType.Float16, 48)]
    public void A_sequence_gets_the_same_bits_alone_and_padded_among_others(ScalarType type, int dim)
    {
        const int heads = 4, own = 300;
        var generator = new TorchSharp.torch.Generator(5);
        using var q = randn([1, heads, 1, dim], generator: generator).to_type(type);
        using var k = randn([1, heads, own, dim], generator: generator).to_type(type);
        using var v = randn([1, heads, own, dim], generator: generator).to_type(type);
        using var alone = InvariantAttention.Decode(q, k, v, [0]);

        // The same sequence third of four, left-padded by 45 (garbage in its padding), the others of other lengths.
        const int pad = 45, length = own + pad;
        using var qs = randn([4, heads, 1, dim], generator: generator).to_type(type);
        using var ks = randn([4, heads, length + 9, dim], generator: generator).to_type(type);
        using var vs = randn([4, heads, length + 9, dim], generator: generator).to_type(type);
        qs[2] = q[0];
        ks[2, TensorIndex.Colon, TensorIndex.Slice(pad, length)] = k[0];
        vs[2, TensorIndex.Colon, TensorIndex.Slice(pad, length)] = v[0];
        using var kp = ks.narrow(2, 0, length);
        using var vp = vs.narrow(2, 0, length);
        using var batched = InvariantAttention.Decode(qs, kp, vp, [0, 3, pad, 100]);
        Assert.True(Same(alone[0], batched[2]), "the sequence's context changed with its batch and padding");
    }

    /// <summary>
    /// Keys and values widened in registers as they are read give the bits of widening each row into a buffer first (the
    /// reference path), in each type, at heads of 128 and 64 and at heads that are not a multiple of the score's 32 lanes (80,
    /// 40), with key/value heads shared, paddings, a prefix of a longer cache, large and tiny values (float16 subnormals
    /// among them) and an infinity.
    /// </summary>
    [Theory]
    [InlineData(ScalarType.Float16, 128, 1)]
    [InlineData(ScalarType.Float16, 64, 2)]
    [InlineData(ScalarType.Float16, 80, 1)]
    [InlineData(ScalarType.Float16, 40, 4)]
    [InlineData(ScalarType.BFloat16, 128, 1)]
    [InlineData(ScalarType.BFloat16, 64, 1)]
    [InlineData(ScalarType.BFloat16, 40, 2)]
    [InlineData(ScalarType.Float32, 128, 2)]
    [InlineData(ScalarType.Float32, 48, 1)]
    public void Rows_widened_in_registers_give_the_buffered_bits(ScalarType type, int dim, int group)
    {
        var generator = new TorchSharp.torch.Generator((ulong)(17 + dim + group));
        const int heads = 4;
        using var q = (randn([3, heads, 1, dim], generator: generator) * 4).to_type(type);
        using var cacheKeys = (randn([3, heads / group, 70, dim], generator: generator) * 4).to_type(type);
        using var cacheValues = (randn([3, heads / group, 70, dim], generator: generator) * 4).to_type(type);
        // Tiny values (float16 subnormals below 6.1e-5) in one sequence's keys and values; an infinite value far from its keys.
        cacheKeys[1, 0, TensorIndex.Slice(10, 20)] = cacheKeys[1, 0, TensorIndex.Slice(10, 20)] * 1e-6;
        cacheValues[1, 0, TensorIndex.Slice(10, 20)] = cacheValues[1, 0, TensorIndex.Slice(10, 20)] * 1e-6;
        cacheValues[2, 0, 65, 3] = float.PositiveInfinity; // beyond the 61 attended
        using var keys = cacheKeys.narrow(2, 0, 61);
        using var values = cacheValues.narrow(2, 0, 61);
        int[] starts = [0, 9, 40];
        Tensor buffered;
        var wide = InvariantAttentionRows.Wide;
        try
        {
            InvariantAttention.InRegisters = false;
            buffered = InvariantAttention.Decode(q, keys, values, starts);
            InvariantAttention.InRegisters = true;
            // Eight floats at a time, then sixteen where the CPU has AVX-512.
            foreach (var sixteen in System.Runtime.Intrinsics.X86.Avx512F.IsSupported ? new[] { false, true } : [false])
            {
                InvariantAttentionRows.Wide = sixteen;
                using var widened = InvariantAttention.Decode(q, keys, values, starts);
                Assert.True(widened.equal(buffered).all().item<bool>(),
                    $"{type}, d {dim}, {(sixteen ? 16 : 8)} at a time: {widened.ne(buffered).sum().item<long>()} values differ");
            }
        }
        finally
        {
            InvariantAttention.InRegisters = true;
            InvariantAttentionRows.Wide = wide;
        }
        using (buffered)
            Assert.False(buffered.isnan().any().item<bool>());
        // With an infinite value attended, its dimension is infinite or NaN either way, alike.
        cacheValues[2, 0, 50, 3] = float.PositiveInfinity;
        using var withInfinity = InvariantAttention.Decode(q, keys, values, starts);
        Assert.True(withInfinity[2, 0, 3].isinf().item<bool>() || withInfinity[2, 0, 3].isnan().item<bool>());
        InvariantAttention.InRegisters = false;
        try
        {
            using var bufferedInfinity = InvariantAttention.Decode(q, keys, values, starts);
            Assert.True(withInfinity.equal(bufferedInfinity).all().item<bool>() || (withInfinity.isnan().sum().item<long>() == bufferedInfinity.isnan().sum().item<long>()
                && withInfinity.nan_to_num().equal(bufferedInfinity.nan_to_num()).all().item<bool>()));
        }
        finally
        {
            InvariantAttention.InRegisters = true;
        }
    }

    /// <summary>
    /// Every float16 value, widened in registers eight and (with AVX-512) sixteen at a time, is the float .NET's conversion
    /// gives (a NaN: a NaN).
    /// </summary>
    [Fact]
    public unsafe void Every_float16_widens_exactly()
    {
        if (!InvariantAttentionRows.Supports(8)) return;
        var halves = new ushort[65536];
        for (var i = 0; i < halves.Length; i++) halves[i] = (ushort)i;
        var eights = new float[halves.Length];
        var sixteens = new float[halves.Length];
        var wide = System.Runtime.Intrinsics.X86.Avx512F.IsSupported;
        fixed (ushort* p = halves)
            for (var i = 0; i < halves.Length; i += 16)
            {
                InvariantAttentionRows.HalfRow.Load((byte*)p, i).CopyTo(eights, i);
                InvariantAttentionRows.HalfRow.Load((byte*)p, i + 8).CopyTo(eights, i + 8);
                if (wide) InvariantAttentionRows.HalfRow.Load16((byte*)p, i).CopyTo(sixteens, i);
            }
        for (var i = 0; i < halves.Length; i++)
        {
            var expected = (float)BitConverter.UInt16BitsToHalf(halves[i]);
            foreach (var (actual, how) in wide ? new[] { (eights[i], "eight"), (sixteens[i], "sixteen") } : [(eights[i], "eight")])
                Assert.True(float.IsNaN(expected) ? float.IsNaN(actual) : BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual),
                    $"0x{i:x4}, {how} at a time: {actual} for {expected}");
        }
    }

    [Fact]
    public void The_vector_path_adds_in_the_written_order()
    {
        var generator = new TorchSharp.torch.Generator(3);
        for (var trial = 0; trial < 50; trial++)
        {
            using var pair = randn([2, 128], generator: generator).mul(trial + 1);
            var q = pair[0].data<float>().ToArray();
            var k = pair[1].data<float>().ToArray();
            var lanes = new float[32];
            for (var i = 0; i < 128; i++) lanes[i % 32] = MathF.FusedMultiplyAdd(q[i], k[i], lanes[i % 32]);
            for (var offset = 16; offset > 0; offset /= 2)
                for (var l = 0; l < offset; l++) lanes[l] += lanes[l + offset];
            Assert.Equal(BitConverter.SingleToInt32Bits(lanes[0]), BitConverter.SingleToInt32Bits(InvariantAttention.Score(q, k, new float[32])));
        }
    }

    [Fact]
    public void A_start_outside_the_attended_positions_is_refused_by_name()
    {
        using var q = randn([2, 2, 1, 8]);
        using var kv = randn([2, 2, 10, 8]);
        var error = Assert.Throws<ArgumentException>(() => InvariantAttention.Decode(q, kv, kv, [0, 10]));
        Assert.Contains("sequence 1 starts at 10", error.Message);
    }

    [Fact]
    public void Batch_invariant_products_are_the_linear_map_and_give_a_row_the_same_bits_in_any_batch()
    {
        var generator = new TorchSharp.torch.Generator(9);
        using var weight = randn([96, 64], generator: generator);
        using var bias = randn([96], generator: generator);
        using var row = randn([1, 1, 64], generator: generator);
        using var alone = Products.BatchInvariant.Linear(row, weight, bias);
        using var plain = F.linear(row, weight, bias);
        Assert.True((alone - plain).abs().max().item<float>() < 1e-4f);
        foreach (var (batch, at) in new[] { (7, 3), (128, 127), (300, 130) })
        {
            using var x = randn([batch, 1, 64], generator: generator);
            x[at] = row[0];
            using var y = Products.BatchInvariant.Linear(x, weight, bias);
            Assert.Equal(new long[] { batch, 1, 96 }, y.shape);
            Assert.True(Same(y[at], alone[0]), $"the row changed in a batch of {batch}");
            using var expected = F.linear(x, weight, bias);
            Assert.True((y - expected).abs().max().item<float>() < 1e-4f);
        }
        // Prefill rows (several tokens per sequence) in calls of their own size: a row among 3 x 400 as among 1 x 2.
        using var two = cat([row, row], 1);
        using var reference = Products.BatchInvariant.Linear(two, weight, bias);
        using var prompts = randn([3, 400, 64], generator: generator);
        prompts[2, 399] = row[0, 0];
        using var prefill = Products.BatchInvariant.Linear(prompts, weight, bias);
        Assert.True(Same(prefill[2, 399], reference[0, 0]), "a prefill row changed with its batch");
    }

    [Fact]
    public void Prompts_are_attended_apart_from_their_padding()
    {
        const int heads = 2, dim = 16, own = 9;
        var generator = new TorchSharp.torch.Generator(4);
        using var q = randn([1, heads, own, dim], generator: generator);
        using var k = randn([1, heads, own, dim], generator: generator);
        using var v = randn([1, heads, own, dim], generator: generator);
        using var alone = AttentionMath.AttendPrompts(q, k, v, [0]);
        const int s = 14;
        using var qs = randn([3, heads, s, dim], generator: generator);
        using var ks = randn([3, heads, s, dim], generator: generator);
        using var vs = randn([3, heads, s, dim], generator: generator);
        foreach (var (t, own1) in new[] { (qs, q), (ks, k), (vs, v) }) t[1, TensorIndex.Colon, TensorIndex.Slice(s - own, s)] = own1[0];
        using var batched = AttentionMath.AttendPrompts(qs, ks, vs, [0, s - own, s - own]);
        Assert.True(Same(batched[1, TensorIndex.Slice(s - own, s)], alone[0]), "the prompt's attention changed with its padding");
        Assert.Equal(0f, batched[1, TensorIndex.Slice(0, s - own)].abs().max().item<float>());
        // The masked attention the plain path runs gives the same values, to rounding.
        using var mask = ones([3, 1, s, s], ScalarType.Bool).tril();
        for (var b = 1; b < 3; b++) mask[b, 0, TensorIndex.Colon, TensorIndex.Slice(0, s - own)] = false;
        for (var b = 1; b < 3; b++)
            for (var i = 0; i < s - own; i++) mask[b, 0, i, i] = true;
        using var plain = AttentionMath.Attend(qs, ks, vs, mask);
        Assert.True((plain[1, TensorIndex.Slice(s - own, s)] - alone[0]).abs().max().item<float>() < 1e-5f);
    }

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.equal(b).all().item<bool>();
}
