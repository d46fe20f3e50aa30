using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ActorInfer.Model.Layers;

/// <summary>
/// <see cref="InvariantAttention"/>'s written order over one (sequence, head) on the CPU with every key and value row widened
/// to single precision in registers as it is read: no row is converted into a buffer first, and the values' four partial
/// sums are added row by row in eight-float vectors. The same operations in the same order as the buffered path, so the same
/// bits (<c>InvariantAttentionTests</c> compares the two).
/// </summary>
internal static unsafe partial class InvariantAttentionRows
{
    /// <summary>AVX2 with fused multiply-adds, and heads of whole eight-float vectors.</summary>
    public static bool Supports(long headDim) => Avx2.IsSupported && Fma.IsSupported && headDim % 8 == 0 && headDim <= InvariantAttention.MaxHeadDim;

    /// <summary>
    /// Whether heads of whole 32-float multiples go sixteen floats at a time (AVX-512): the same lanes and the same folds, half
    /// the instructions. Tests turn it off to compare the two widths.
    /// </summary>
    internal static bool Wide { get; set; } = Avx512F.IsSupported;

    /// <summary>
    /// Rows ahead of the one read that are fetched into the cache meanwhile (4 KiB of float16 heads of 128): the kernel waited
    /// on memory, and on the 2-core CPU this made a call 1.4 times faster (docs/perf/cpu-attention-in-registers/).
    /// </summary>
    private const int Ahead = 16;

    /// <summary>Eight (sixteen) elements of a row from <paramref name="i"/> on, widened to floats exactly.</summary>
    public interface IRow
    {
        static abstract Vector256<float> Load(byte* row, int i);

        static abstract Vector512<float> Load16(byte* row, int i);
    }

    public readonly struct FloatRow : IRow
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load(byte* row, int i) => Avx.LoadVector256((float*)row + i);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load16(byte* row, int i) => Vector512.Load((float*)row + i);
    }

    /// <summary>A bfloat16 is a float's upper half.</summary>
    public readonly struct BFloat16Row : IRow
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load(byte* row, int i) =>
            Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(Sse2.LoadVector128((ushort*)row + i)), 16).AsSingle();

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load16(byte* row, int i) =>
            Vector512.ShiftLeft(Avx512F.ConvertToVector512Int32(Vector256.Load((ushort*)row + i)), 16).AsSingle();
    }

    /// <summary>
    /// A float16 widened exactly: sign-extended to 32 bits and shifted so that its sign is the float's and its exponent and
    /// fraction sit in the float's fields, then scaled by 2^112 (exact for normal and subnormal values alike, the sign carried
    /// through); infinities and NaNs take the float's all-ones exponent instead. NaN payloads are kept (not quieted).
    /// </summary>
    public readonly struct HalfRow : IRow
    {
        // Constants written in place, not read from static fields: a method compiled before its class's statics are set
        // reads such a field through a check on every use.
        internal const int Fields = unchecked((int)0x8FFFE000), Exponent = 0x0F800000, Raise = 0x70000000, TwoTo112 = 0x77800000;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load(byte* row, int i)
        {
            var bits = Avx2.And(Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(Sse2.LoadVector128((short*)row + i)), 13), Vector256.Create(Fields));
            var special = Avx2.CompareEqual(Avx2.And(bits, Vector256.Create(Exponent)), Vector256.Create(Exponent)).AsSingle();
            return Avx.BlendVariable(Avx.Multiply(bits.AsSingle(), Vector256.Create(TwoTo112).AsSingle()), Avx2.Or(bits, Vector256.Create(Raise)).AsSingle(), special);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load16(byte* row, int i)
        {
            var bits = Vector512.ShiftLeft(Avx512F.ConvertToVector512Int32(Vector256.Load((short*)row + i)), 13) & Vector512.Create(Fields);
            var special = Vector512.Equals(bits & Vector512.Create(Exponent), Vector512.Create(Exponent)).AsSingle();
            return Vector512.ConditionalSelect(special, (bits | Vector512.Create(Raise)).AsSingle(), bits.AsSingle() * Vector512.Create(TwoTo112).AsSingle());
        }
    }

    /// <summary>
    /// One (sequence, head): <paramref name="n"/> keys and values from their first rows on, each row
    /// <paramref name="rowStride"/> bytes after the last; the context's <paramref name="d"/> floats, not yet divided, into
    /// <paramref name="context"/>, and the weights' sum returned.
    /// </summary>
    /// <param name="scores">At least <paramref name="n"/> floats.</param>
    /// <param name="sums"><see cref="InvariantAttention.SumParts"/> floats.</param>
    /// <param name="parts"><see cref="InvariantAttention.ValueParts"/> times <paramref name="d"/> floats.</param>
    /// <remarks>
    /// Compiled optimized at once: left to tiered compilation, its loops ran in their first tier's code (with on-stack
    /// replacement) for hundreds of calls on a process held to one core, 3.7 times slower (docs/perf/cpu-attention-in-registers/).
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Head<TRow>(float* query, byte* keys, long keyStride, byte* values, long valueStride, int n, int d, float scale,
        float* scores, float* sums, float* parts) where TRow : IRow
    {
        var wide = Wide && d % InvariantAttention.ScoreLanes == 0;
        var rowBytes = d * (typeof(TRow) == typeof(FloatRow) ? 4 : 2);
        for (var r = 0; r < n; r++)
        {
            Fetch(keys + (r + Ahead) * keyStride, rowBytes);
            scores[r] = ScoreRow<TRow>(query, keys + r * keyStride, d, wide) * scale;
        }
        var total = Weigh(scores, n, sums, wide);
        new Span<float>(parts, InvariantAttention.ValueParts * d).Clear();
        for (var r = 0; r < n; r++)
        {
            var row = values + r * valueStride;
            Fetch(row + Ahead * valueStride, rowBytes);
            Accumulate<TRow>(scores[r], row, parts + (r % InvariantAttention.ValueParts) * d, d, wide);
        }
        FoldParts(parts, d);
        return total;
    }

    /// <summary>A query's score against a row, sixteen floats at a time where <paramref name="wide"/>, else eight (the same bits).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float ScoreRow<TRow>(float* query, byte* row, int d, bool wide) where TRow : IRow =>
        wide ? Score16<TRow>(query, row, d) : Score<TRow>(query, row, d);

    /// <summary>part[i] = fma(weight, row[i], part[i]) over a row's <paramref name="d"/> values, sixteen or eight at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Accumulate<TRow>(float weight, byte* row, float* part, int d, bool wide) where TRow : IRow
    {
        if (wide)
        {
            var w16 = Vector512.Create(weight);
            for (var i = 0; i < d; i += 16)
                Vector512.Store(Avx512F.FusedMultiplyAdd(w16, TRow.Load16(row, i), Vector512.Load(part + i)), part + i);
            return;
        }
        var w = Vector256.Create(weight);
        for (var i = 0; i < d; i += 8)
            Avx.Store(part + i, Fma.MultiplyAdd(w, TRow.Load(row, i), Avx.LoadVector256(part + i)));
    }

    /// <summary>
    /// <paramref name="count"/> query heads that share one key/value head, each as <see cref="Head{TRow}"/>: each key and value
    /// row is widened once into <paramref name="row"/> and read from there by every head (a float row gives the floats
    /// widening gives, so the same bits). Head j's context (<paramref name="d"/> floats, not yet divided) goes to the first
    /// <paramref name="d"/> of its <c>4 d</c> in <paramref name="parts"/>, its weights' sum to <paramref name="totals"/>[j].
    /// </summary>
    /// <param name="query">The heads' queries, <paramref name="d"/> floats a head.</param>
    /// <param name="scores">count x n floats.</param>
    /// <param name="sums">count x <see cref="InvariantAttention.SumParts"/> floats.</param>
    /// <param name="parts">count x <see cref="InvariantAttention.ValueParts"/> x d floats.</param>
    /// <param name="row"><paramref name="d"/> floats.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SharedHeads<TRow>(float* query, int count, byte* keys, long keyStride, byte* values, long valueStride, int n, int d,
        float scale, float* scores, float* sums, float* parts, float* totals, float* row) where TRow : IRow
    {
        var wide = Wide && d % InvariantAttention.ScoreLanes == 0;
        var rowBytes = d * (typeof(TRow) == typeof(FloatRow) ? 4 : 2);
        for (var r = 0; r < n; r++)
        {
            Fetch(keys + (r + Ahead) * keyStride, rowBytes);
            Widen<TRow>(keys + r * keyStride, d, wide, row);
            for (var j = 0; j < count; j++)
                scores[j * n + r] = ScoreRow<FloatRow>(query + j * d, (byte*)row, d, wide) * scale;
        }
        for (var j = 0; j < count; j++) totals[j] = Weigh(scores + j * n, n, sums + j * InvariantAttention.SumParts, wide);
        var partsPerHead = InvariantAttention.ValueParts * d;
        new Span<float>(parts, count * partsPerHead).Clear();
        for (var r = 0; r < n; r++)
        {
            Fetch(values + (r + Ahead) * valueStride, rowBytes);
            Widen<TRow>(values + r * valueStride, d, wide, row);
            for (var j = 0; j < count; j++)
                Accumulate<FloatRow>(scores[j * n + r], (byte*)row, parts + j * partsPerHead + (r % InvariantAttention.ValueParts) * d, d, wide);
        }
        for (var j = 0; j < count; j++) FoldParts(parts + j * partsPerHead, d);
    }

    /// <summary>A row of <paramref name="d"/> elements widened to floats into <paramref name="row"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Widen<TRow>(byte* source, int d, bool wide, float* row) where TRow : IRow
    {
        if (wide)
        {
            for (var i = 0; i < d; i += 16) TRow.Load16(source, i).Store(row + i);
            return;
        }
        for (var i = 0; i < d; i += 8) Avx.Store(row + i, TRow.Load(source, i));
    }

    /// <summary>
    /// <paramref name="n"/> scores turned into their weights in place, exp(score - max), key r's weight into sum r mod 128 in the
    /// order of its keys, the sums folded pairwise (t with t + 64, ..., + 1); the weights' sum returned.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Weigh(float* scores, int n, float* sums, bool wide)
    {
        var max = float.NegativeInfinity;
        for (var r = 0; r < n; r++) max = MathF.Max(max, scores[r]);
        new Span<float>(sums, InvariantAttention.SumParts).Clear();
        var from = 0;
        if (wide)
        {
            // Sixteen keys at a time: key r's weight into sum r mod 128, sixteen sums at once, each in the order of its keys.
            var top = Vector512.Create(max);
            for (; from + 16 <= n; from += 16)
            {
                var e = Exp16(Vector512.Load(scores + from) - top);
                e.Store(scores + from);
                var at = sums + from % InvariantAttention.SumParts;
                (Vector512.Load(at) + e).Store(at);
            }
        }
        for (var r = from; r < n; r++)
        {
            var e = InvariantAttention.Exp(scores[r] - max);
            scores[r] = e;
            sums[r % InvariantAttention.SumParts] += e;
        }
        for (var stride = InvariantAttention.SumParts / 2; stride > 0; stride /= 2)
            for (var t = 0; t < stride; t++) sums[t] += sums[t + stride];
        return sums[0];
    }

    /// <summary>The values' four partial sums of each dimension added as (s0 + s1) + (s2 + s3), into the first.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FoldParts(float* parts, int d)
    {
        for (var i = 0; i < d; i += 8)
        {
            var a = Avx.Add(Avx.LoadVector256(parts + i), Avx.LoadVector256(parts + d + i));
            var b = Avx.Add(Avx.LoadVector256(parts + 2 * d + i), Avx.LoadVector256(parts + 3 * d + i));
            Avx.Store(parts + i, Avx.Add(a, b));
        }
    }

    /// <summary>Asks for a row's cache lines ahead of their use (past the cache's end too: a prefetch never faults).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Fetch(byte* row, int bytes)
    {
        for (var b = 0; b < bytes; b += 64) Sse.Prefetch0(row + b);
    }

    /// <summary>
    /// <see cref="InvariantAttention.Exp"/> of sixteen values: the same operations on each, with the same constants written in
    /// place, so the same bits (a test compares the two over the whole range).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Exp16(Vector512<float> x)
    {
        var n = Vector512.Round(x * Vector512.Create(InvariantAttention.Log2EBits).AsSingle());
        var r = Avx512F.FusedMultiplyAdd(n, Vector512.Create(InvariantAttention.MinusLn2HiBits).AsSingle(), x);
        r = Avx512F.FusedMultiplyAdd(n, Vector512.Create(InvariantAttention.Ln2LoBits).AsSingle(), r);
        var p = Vector512.Create(1f / 5040);
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(1f / 720));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(1f / 120));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(1f / 24));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(1f / 6));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(0.5f));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(1f));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(1f));
        var e = Vector512.ConvertToInt32(n);
        var normal = p * Vector512.ShiftLeft(e + Vector512.Create(127), 23).AsSingle();
        var tiny = p * Vector512.ShiftLeft(e + Vector512.Create(64 + 127), 23).AsSingle() * Vector512.Create((-64 + 127) << 23).AsSingle();
        var scaled = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(e, Vector512.Create(-126)).AsSingle(), normal, tiny);
        // Below the floor, and NaN: 0.
        return Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(x, Vector512.Create(InvariantAttention.ExpFloor)), scaled, Vector512<float>.Zero);
    }

    /// <summary>
    /// <see cref="Score{TRow}"/> sixteen lanes at a time: lanes 0-15 and 16-31 as two vectors, the same products into the same
    /// lanes in the same order; folding the two vectors is the fold of lane l with l + 16, their halves' the fold with l + 8.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Score16<TRow>(float* q, byte* k, int d) where TRow : IRow
    {
        Vector512<float> low = Vector512<float>.Zero, high = low;
        for (var o = 0; o < d; o += InvariantAttention.ScoreLanes)
        {
            low = Avx512F.FusedMultiplyAdd(Vector512.Load(q + o), TRow.Load16(k, o), low);
            high = Avx512F.FusedMultiplyAdd(Vector512.Load(q + o + 16), TRow.Load16(k, o + 16), high);
        }
        return Fold(low, high);
    }

    /// <summary>The score's 32 lanes, 0-15 and 16-31, folded pairwise: lane l with l + 16, then + 8, + 4, + 2, + 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Fold(Vector512<float> low, Vector512<float> high)
    {
        var sixteen = low + high;
        var eight = sixteen.GetLower() + sixteen.GetUpper();
        var c = Sse.Add(eight.GetLower(), eight.GetUpper());
        return (c.GetElement(0) + c.GetElement(2)) + (c.GetElement(1) + c.GetElement(3));
    }

    /// <summary>
    /// The score's 32 lanes as four vectors (element i into lane i mod 32: lanes 0-7, 8-15, 16-23, 24-31), each lane's
    /// products added in order by fused multiply-adds, folded as <see cref="InvariantAttention.Score"/> folds.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Score<TRow>(float* q, byte* k, int d) where TRow : IRow
    {
        Vector256<float> p0 = Vector256<float>.Zero, p1 = p0, p2 = p0, p3 = p0;
        var o = 0;
        for (; o + InvariantAttention.ScoreLanes <= d; o += InvariantAttention.ScoreLanes)
        {
            p0 = Fma.MultiplyAdd(Avx.LoadVector256(q + o), TRow.Load(k, o), p0);
            p1 = Fma.MultiplyAdd(Avx.LoadVector256(q + o + 8), TRow.Load(k, o + 8), p1);
            p2 = Fma.MultiplyAdd(Avx.LoadVector256(q + o + 16), TRow.Load(k, o + 16), p2);
            p3 = Fma.MultiplyAdd(Avx.LoadVector256(q + o + 24), TRow.Load(k, o + 24), p3);
        }
        // A head that is not a multiple of 32: the last lanes take one product fewer.
        if (o < d) p0 = Fma.MultiplyAdd(Avx.LoadVector256(q + o), TRow.Load(k, o), p0);
        if (o + 8 < d) p1 = Fma.MultiplyAdd(Avx.LoadVector256(q + o + 8), TRow.Load(k, o + 8), p1);
        if (o + 16 < d) p2 = Fma.MultiplyAdd(Avx.LoadVector256(q + o + 16), TRow.Load(k, o + 16), p2);
        var folded = Avx.Add(Avx.Add(p0, p2), Avx.Add(p1, p3));
        var c = Sse.Add(folded.GetLower(), folded.GetUpper());
        return (c.GetElement(0) + c.GetElement(2)) + (c.GetElement(1) + c.GetElement(3));
    }
}
