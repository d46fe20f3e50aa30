using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ActorInfer.Model.Layers;

/// <summary>
/// <see cref="InvariantAttention"/>'s written order over one (sequence, head) whose earlier keys and values are read from a
/// 4-bit compressed cache (<see cref="CacheCompression"/>) as they are: never expanded into a cache first. A group's sixteen
/// possible values are formed once per row, exactly as expansion forms them (a code times the group's step rounded to the
/// cache's type, plus its minimum, rounded), into one sixteen-float vector; each code then picks its value from it (one
/// permutation per sixteen codes). So the rows give the bits that expansion, then attention, gives, reading about a quarter
/// of the bytes of a float16 cache and writing none.
/// </summary>
internal static unsafe partial class InvariantAttentionRows
{
    /// <summary>
    /// Whether heads of <paramref name="headDim"/> over groups of <paramref name="groupSize"/> are read as codes: AVX-512, heads
    /// of whole 32-float multiples made of whole groups of 32 or 64 values (so that sixteen codes come from one half). Always
    /// sixteen floats at a time: <see cref="Wide"/>, which tests turn off to compare the plain path's two widths while other
    /// tests run, does not apply.
    /// </summary>
    public static bool SupportsCodes(long headDim, long groupSize) =>
        Avx512F.IsSupported && headDim % InvariantAttention.ScoreLanes == 0 && headDim <= InvariantAttention.MaxHeadDim
        && groupSize is 32 or 64 && headDim % groupSize == 0;

    /// <summary>One head's compressed rows: codes (<c>head_dim / 2</c> bytes a row) and ranges (each group's minimum and step).</summary>
    public readonly struct CodeRows(byte* codes, long codeStride, byte* ranges, long rangeStride)
    {
        public readonly byte* Codes = codes, Ranges = ranges;
        public readonly long CodeStride = codeStride, RangeStride = rangeStride;

        public byte* CodesOf(int row) => Codes + row * CodeStride;

        public byte* RangesOf(int row) => Ranges + row * RangeStride;

        /// <summary>Asks for the <paramref name="codeBytes"/> and <paramref name="rangeBytes"/> of a row ahead, from the offsets given.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void FetchAhead(int row, long codeOffset, int codeBytes, long rangeOffset, int rangeBytes)
        {
            Fetch(CodesOf(row + Ahead) + codeOffset, codeBytes);
            Fetch(RangesOf(row + Ahead) + rangeOffset, rangeBytes);
        }
    }

    /// <summary>A group's sixteen values from its minimum and step, as <see cref="CacheCompression"/>'s expansion forms them.</summary>
    public interface ICodes
    {
        /// <summary>Group <paramref name="g"/>'s table from <paramref name="ranges"/> (a head's (minimum, step) pairs).</summary>
        static abstract Vector512<float> Table(byte* ranges, int g);
    }

    /// <summary>Float16: code x step rounded to float16, plus the minimum, rounded again (libtorch's half operations).</summary>
    public readonly struct HalfCodes : ICodes
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Table(byte* ranges, int g)
        {
            // The pair widened as HalfRow widens a row, four bytes read.
            var bits = Sse2.And(Sse2.ShiftLeftLogical(Sse41.ConvertToVector128Int32(Vector128.CreateScalar(*(int*)(ranges + 4 * g)).AsInt16()), 13),
                Vector128.Create(HalfRow.Fields));
            var special = Sse2.CompareEqual(Sse2.And(bits, Vector128.Create(HalfRow.Exponent)), Vector128.Create(HalfRow.Exponent)).AsSingle();
            var pair = Sse41.BlendVariable(Sse.Multiply(bits.AsSingle(), Vector128.Create(HalfRow.TwoTo112).AsSingle()),
                Sse2.Or(bits, Vector128.Create(HalfRow.Raise)).AsSingle(), special);
            var scaled = RoundToHalf(Vector512<float>.Indices * Vector512.Create(pair.GetElement(1)));
            return RoundToHalf(scaled + Vector512.Create(pair.GetElement(0)));
        }
    }

    /// <summary>Bfloat16: as float16, rounded to bfloat16.</summary>
    public readonly struct BFloat16Codes : ICodes
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Table(byte* ranges, int g)
        {
            var pair = (ushort*)ranges + 2 * g;
            var step = BitConverter.Int32BitsToSingle(pair[1] << 16);
            var minimum = BitConverter.Int32BitsToSingle(pair[0] << 16);
            var scaled = RoundToBFloat16(Vector512<float>.Indices * Vector512.Create(step));
            return RoundToBFloat16(scaled + Vector512.Create(minimum));
        }
    }

    /// <summary>Float32: code x step, plus the minimum (two roundings, no fused multiply-add).</summary>
    public readonly struct FloatCodes : ICodes
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Table(byte* ranges, int g)
        {
            var pair = (float*)ranges + 2 * g;
            var scaled = Vector512<float>.Indices * Vector512.Create(pair[1]);
            return scaled + Vector512.Create(pair[0]);
        }
    }

    /// <summary>
    /// Sixteen floats, each a product or sum of float16 values (so a multiple of 2^-24), rounded to the nearest float16 value,
    /// ties to even, as floats. Adding 1.5 x 2^(e + 13), of x's sign and binade 2^e, keeps exactly the bits of a float16's
    /// fraction, and subtracting it back is exact. Below float16's normal range that keeps finer bits than a float16 has,
    /// but there such a value is already a float16 (a multiple of 2^-24 under 2^-14), and stays. Beyond 65504 the result is
    /// infinite, as a float16's would be; infinities stay, a NaN stays a NaN, a zero keeps its sign.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> RoundToHalf(Vector512<float> x)
    {
        var sign = x.AsInt32() & Vector512.Create(int.MinValue);
        var magic = ((x.AsInt32() & Vector512.Create(unchecked((int)0xFF800000))) + Vector512.Create(0x06C00000)).AsSingle();
        var rounded = x + magic - magic;
        var infinite = (sign | Vector512.Create(0x7F800000)).AsSingle();
        // A zero keeps its sign (the sums lose it); elsewhere the sign is already the input's.
        return Vector512.ConditionalSelect(Vector512.GreaterThan(Vector512.Abs(rounded), Vector512.Create(65504f)), infinite, (rounded.AsInt32() | sign).AsSingle());
    }

    /// <summary>Sixteen floats rounded to bfloat16 to nearest, ties to even, as floats (<see cref="InvariantAttention.ToBFloat16"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> RoundToBFloat16(Vector512<float> x)
    {
        var bits = x.AsUInt32();
        var rounded = (bits + Vector512.Create(0x7FFFu) + (Vector512.ShiftRightLogical(bits, 16) & Vector512<uint>.One)) & Vector512.Create(0xFFFF0000u);
        var quiet = (bits | Vector512.Create(0x400000u)) & Vector512.Create(0xFFFF0000u);
        return Vector512.ConditionalSelect(Vector512.Equals(x, x).AsUInt32(), rounded, quiet).AsSingle();
    }

    /// <summary>
    /// A group's values sixteen at a time, in order: the first half's codes are the low nibbles of its bytes, the second
    /// half's the high nibbles of the same bytes, so each sixteen bytes are widened once for both (a permutation reads only
    /// its index's low four bits). Groups hold 32 or 64 values (<see cref="SupportsCodes"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Values(Vector512<float> table, byte* group, int groupSize, out Vector512<float> v0, out Vector512<float> v1,
        out Vector512<float> v2, out Vector512<float> v3)
    {
        var first = Avx512F.ConvertToVector512Int32(Vector128.Load(group));
        v0 = Avx512F.PermuteVar16x32(table, first);
        if (groupSize == 32)
        {
            v1 = Avx512F.PermuteVar16x32(table, Vector512.ShiftRightLogical(first, 4));
            v2 = v3 = default;
            return;
        }
        var second = Avx512F.ConvertToVector512Int32(Vector128.Load(group + 16));
        v1 = Avx512F.PermuteVar16x32(table, second);
        v2 = Avx512F.PermuteVar16x32(table, Vector512.ShiftRightLogical(first, 4));
        v3 = Avx512F.PermuteVar16x32(table, Vector512.ShiftRightLogical(second, 4));
    }

    /// <summary>A key/value head's tables for one row: group g's sixteen values into <paramref name="tables"/>[g].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Tables<TCodes>(byte* ranges, int groups, Vector512<float>* tables) where TCodes : ICodes
    {
        for (var g = 0; g < groups; g++) tables[g] = TCodes.Table(ranges, g);
    }

    /// <summary><see cref="Score16{TRow}"/> over a row of codes: the same products into the same lanes in the same order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float ScoreCodes(float* q, byte* codes, Vector512<float>* tables, int d, int groupSize)
    {
        Vector512<float> low = Vector512<float>.Zero, high = low;
        var half = groupSize / 2;
        for (int g = 0, o = 0; o < d; g++, o += groupSize)
        {
            Values(tables[g], codes + g * half, groupSize, out var v0, out var v1, out var v2, out var v3);
            // Element o + i into lane i mod 32: sixteen to the low lanes, sixteen to the high, in order.
            low = Avx512F.FusedMultiplyAdd(Vector512.Load(q + o), v0, low);
            high = Avx512F.FusedMultiplyAdd(Vector512.Load(q + o + 16), v1, high);
            if (groupSize == 32) continue;
            low = Avx512F.FusedMultiplyAdd(Vector512.Load(q + o + 32), v2, low);
            high = Avx512F.FusedMultiplyAdd(Vector512.Load(q + o + 48), v3, high);
        }
        return Fold(low, high);
    }

    /// <summary>
    /// Heads <paramref name="first"/> to <paramref name="first"/> + <paramref name="count"/> - 1 of one sequence, each as
    /// <see cref="Head{TRow}"/> over <paramref name="m"/> compressed rows and then this step's exact key and value
    /// (<typeparamref name="TRow"/>, the cache's type). Each row's codes are read for all the heads at once: a row of a
    /// token-major cache lies a whole batch's rows after the last, so one head read down the rows would touch a new page at
    /// every row for 64 bytes (on the 2-core CPU, whose 300 MB L3 held the whole cache, chunks of one and of eight heads ran
    /// alike). Head j's context (<paramref name="d"/> floats, not yet divided) goes to the first <paramref name="d"/> of its
    /// <c>4 d</c> in <paramref name="parts"/>, its weights' sum to <paramref name="totals"/>[j].
    /// </summary>
    /// <param name="query">The chunk's queries, <paramref name="d"/> floats a head.</param>
    /// <param name="keys">The sequence's first attended row, at key/value head 0; a key/value head's codes are d / 2 bytes on.</param>
    /// <param name="rangeHeadBytes">Bytes of a key/value head's ranges in a row.</param>
    /// <param name="newKeys">The sequence's new key at key/value head 0; the next head <paramref name="newHeadStride"/> bytes on.</param>
    /// <param name="group">Query heads that share a key/value head.</param>
    /// <param name="scores">count x (m + 1) floats.</param>
    /// <param name="sums">count x <see cref="InvariantAttention.SumParts"/> floats.</param>
    /// <param name="parts">count x <see cref="InvariantAttention.ValueParts"/> x d floats.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void HeadsCodes<TCodes, TRow>(float* query, int first, int count, int group, CodeRows keys, CodeRows values, long rangeHeadBytes,
        byte* newKeys, byte* newValues, long newHeadStride, int m, int d, int groupSize, float scale, float* scores, float* sums, float* parts,
        float* totals) where TCodes : ICodes where TRow : IRow
    {
        var n = m + 1;
        var half = groupSize / 2;
        // The chunk's key/value heads: the first, and the bytes their codes and ranges span in a row.
        var kvFirst = first / group;
        var kvSpan = (first + count - 1) / group - kvFirst + 1;
        var codeOffset = kvFirst * (d / 2);
        var rangeOffset = kvFirst * rangeHeadBytes;
        int codeBytes = kvSpan * d / 2, rangeBytes = (int)(kvSpan * rangeHeadBytes);
        // A key/value head's tables for the row, formed once for the query heads that share it (query head j's key/value
        // head is kvOf[j], worked out once, not divided out for each row).
        var headGroups = d / groupSize;
        var tables = stackalloc Vector512<float>[headGroups];
        var kvOf = stackalloc int[count];
        for (var j = 0; j < count; j++) kvOf[j] = (first + j) / group;
        for (var r = 0; r < m; r++)
        {
            keys.FetchAhead(r, codeOffset, codeBytes, rangeOffset, rangeBytes);
            byte* codes = keys.CodesOf(r), ranges = keys.RangesOf(r);
            for (var j = 0; j < count; j++)
            {
                var kv = kvOf[j];
                if (j == 0 || kv != kvOf[j - 1]) Tables<TCodes>(ranges + kv * rangeHeadBytes, headGroups, tables);
                scores[j * n + r] = ScoreCodes(query + j * d, codes + kv * (d / 2), tables, d, groupSize) * scale;
            }
        }
        for (var j = 0; j < count; j++)
        {
            var kv = kvOf[j];
            scores[j * n + m] = Score16<TRow>(query + j * d, newKeys + kv * newHeadStride, d) * scale;
            totals[j] = Weigh(scores + j * n, n, sums + j * InvariantAttention.SumParts, wide: true);
        }
        var partsPerHead = InvariantAttention.ValueParts * d;
        new Span<float>(parts, count * partsPerHead).Clear();
        for (var r = 0; r < m; r++)
        {
            values.FetchAhead(r, codeOffset, codeBytes, rangeOffset, rangeBytes);
            byte* rowCodes = values.CodesOf(r), rowRanges = values.RangesOf(r);
            for (var j = 0; j < count; j++)
            {
                var kv = kvOf[j];
                if (j == 0 || kv != kvOf[j - 1]) Tables<TCodes>(rowRanges + kv * rangeHeadBytes, headGroups, tables);
                var part = parts + j * partsPerHead + (r % InvariantAttention.ValueParts) * d;
                var codes = rowCodes + kv * (d / 2);
                var w = Vector512.Create(scores[j * n + r]);
                for (int g = 0, i = 0; i < d; g++, i += groupSize)
                {
                    Values(tables[g], codes + g * half, groupSize, out var v0, out var v1, out var v2, out var v3);
                    Vector512.Store(Avx512F.FusedMultiplyAdd(w, v0, Vector512.Load(part + i)), part + i);
                    Vector512.Store(Avx512F.FusedMultiplyAdd(w, v1, Vector512.Load(part + i + 16)), part + i + 16);
                    if (groupSize == 32) continue;
                    Vector512.Store(Avx512F.FusedMultiplyAdd(w, v2, Vector512.Load(part + i + 32)), part + i + 32);
                    Vector512.Store(Avx512F.FusedMultiplyAdd(w, v3, Vector512.Load(part + i + 48)), part + i + 48);
                }
            }
        }
        for (var j = 0; j < count; j++)
        {
            var kv = kvOf[j];
            var head = parts + j * partsPerHead;
            Accumulate<TRow>(scores[j * n + m], newValues + kv * newHeadStride, head + (m % InvariantAttention.ValueParts) * d, d, wide: true);
            FoldParts(head, d);
        }
    }
}
