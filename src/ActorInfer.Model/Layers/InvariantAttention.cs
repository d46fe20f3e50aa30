using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorInfer.Model.Layers;

/// <summary>
/// Decoding attention whose every bit is fixed by one sequence's own query, keys and values: not by the other sequences
/// of its batch, the batch's padding, nor whether it runs on the GPU (<see cref="InvariantAttentionCuda"/>) or the CPU
/// (here). Both follow one written order of single-precision operations, with fused multiply-adds where named and no
/// other contraction:
/// <list type="number">
/// <item>a key's score: 32 partial sums, lane l summing q[i] k[i] for i = l, l + 32, ... by fused multiply-adds; the 32
/// folded pairwise (l with l + 16, then + 8, + 4, + 2, + 1), then times 1/sqrt(d);</item>
/// <item>the weights: exp(score - max) by <see cref="Exp"/>, summed in 128 partial sums (key r into sum r mod 128, in
/// order), folded pairwise (t with t + 64, ..., + 1);</item>
/// <item>the context: 4 partial sums per dimension (key r into sum r mod 4, by fused multiply-adds), added as
/// (s0 + s1) + (s2 + s3), divided by the weights' sum and rounded once to the cache's type.</item>
/// </list>
/// Keys are counted from each sequence's first attended position (its padding is never read), so a sequence gets the
/// same bits alone or in any batch, at any padding, over a cache on either side.
/// </summary>
public static class InvariantAttention
{
    public const int ScoreLanes = 32, SumParts = 128, ValueParts = 4, MaxHeadDim = 256;

    // exp: Cody-Waite reduction by ln 2 and a degree-7 Taylor polynomial, every constant a float given by its bits so that
    // the CUDA source is written from the same numbers.
    internal const int Log2EBits = 0x3FB8AA3B, MinusLn2HiBits = unchecked((int)0xBF318000), Ln2LoBits = 0x395E8083;
    internal static readonly int[] PolynomialBits = [.. new[] { 1f / 5040, 1f / 720, 1f / 120, 1f / 24, 1f / 6, 0.5f, 1f, 1f }.Select(BitConverter.SingleToInt32Bits)];
    /// <summary>Below this, exp gives 0 (exp(-104) is under half the smallest subnormal float).</summary>
    internal const float ExpFloor = -104f;

    /// <summary>e^x for x &lt;= 0, as the CUDA kernel computes it.</summary>
    /// <remarks>Written out without a loop, so that it is inlined where keys are weighed (one call per key).</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Exp(float x)
    {
        if (!(x >= ExpFloor)) return 0f;
        // MathF.Round(x) rounds half to even, as one instruction (the overload naming the mode is a call).
        var n = MathF.Round(x * BitConverter.Int32BitsToSingle(Log2EBits));
        var r = MathF.FusedMultiplyAdd(n, BitConverter.Int32BitsToSingle(MinusLn2HiBits), x);
        r = MathF.FusedMultiplyAdd(n, BitConverter.Int32BitsToSingle(Ln2LoBits), r);
        // The polynomial's constants: the expressions PolynomialBits (the CUDA kernel's) is made of.
        var p = MathF.FusedMultiplyAdd(1f / 5040, r, 1f / 720);
        p = MathF.FusedMultiplyAdd(p, r, 1f / 120);
        p = MathF.FusedMultiplyAdd(p, r, 1f / 24);
        p = MathF.FusedMultiplyAdd(p, r, 1f / 6);
        p = MathF.FusedMultiplyAdd(p, r, 0.5f);
        p = MathF.FusedMultiplyAdd(p, r, 1f);
        p = MathF.FusedMultiplyAdd(p, r, 1f);
        var e = (int)n;
        if (e >= -126) return p * BitConverter.Int32BitsToSingle((e + 127) << 23);
        return p * BitConverter.Int32BitsToSingle((e + 64 + 127) << 23) * BitConverter.Int32BitsToSingle((-64 + 127) << 23);
    }

    /// <summary>
    /// softmax(q k^T / sqrt(d)) v for one query per sequence, [B, 1, heads * d], over keys and values [B, kv heads, L, d]
    /// (a prefix of a longer cache is fine) from <paramref name="starts"/>[b] on: the first position sequence b attends.
    /// </summary>
    /// <param name="startsOnDevice">The starts as an int32 tensor on the queries' device (CUDA only), kept by the caller for the block.</param>
    public static Tensor Decode(Tensor q, Tensor keys, Tensor values, IReadOnlyList<int> starts, Tensor? startsOnDevice = null)
    {
        long b = q.size(0), h = q.size(1), d = q.size(3), length = keys.size(2), kvHeads = keys.size(1);
        if (q.size(2) != 1) throw new ArgumentException($"batch-invariant decoding takes one query per sequence (got {q.size(2)})", nameof(q));
        if (h % kvHeads != 0) throw new ArgumentException($"{h} query heads cannot share {kvHeads} key/value heads", nameof(keys));
        if (d > MaxHeadDim) throw new ArgumentException($"batch-invariant attention takes heads of at most {MaxHeadDim} (got {d})", nameof(q));
        if (starts.Count != b) throw new ArgumentException($"{starts.Count} starts for {b} sequences", nameof(starts));
        for (var i = 0; i < b; i++)
            if (starts[i] < 0 || starts[i] >= length)
                throw new ArgumentException($"sequence {i} starts at {starts[i]}, outside the {length} attended positions", nameof(starts));
        if (q.device_type == DeviceType.CUDA)
            return InvariantAttentionCuda.Decode(q, keys, values, startsOnDevice ?? throw new ArgumentNullException(nameof(startsOnDevice)));
        return OnCpu(q, keys, values, starts);
    }

    /// <summary>
    /// Whether key and value rows are widened in registers where <see cref="InvariantAttentionRows"/> applies (tests compare
    /// it with the rows widened into a buffer first, this kernel's reference path).
    /// </summary>
    internal static bool InRegisters { get; set; } = true;

    private static unsafe Tensor OnCpu(Tensor q, Tensor keys, Tensor values, IReadOnlyList<int> starts)
    {
        var dtype = q.dtype;
        if (dtype is not (ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Float32))
            throw new ArgumentException($"batch-invariant attention on the CPU takes float16, bfloat16 or float32 (got {dtype})", nameof(q));
        if (keys.dtype != dtype || values.dtype != dtype) throw new ArgumentException("queries, keys and values must share a type", nameof(keys));
        if (keys.stride(3) != 1 || values.stride(3) != 1) throw new ArgumentException("keys and values need contiguous heads", nameof(keys));
        long b = q.size(0), h = q.size(1), d = q.size(3), length = keys.size(2), group = h / keys.size(1);
        using var queries = q.to_type(ScalarType.Float32).contiguous();
        var output = empty([b, 1, h * d], dtype);
        var qp = (float*)TensorData.Pointer(queries);
        var kp = (byte*)TensorData.Pointer(keys);
        var vp = (byte*)TensorData.Pointer(values);
        var op = (byte*)TensorData.Pointer(output);
        var kind = dtype switch { ScalarType.Float16 => Element.Half, ScalarType.BFloat16 => Element.BFloat16, _ => Element.Float };
        long element = kind == Element.Float ? 4 : 2;
        long ksb = keys.stride(0), ksh = keys.stride(1), ksl = keys.stride(2), vsb = values.stride(0), vsh = values.stride(1), vsl = values.stride(2);
        var scale = 1f / MathF.Sqrt(d);
        var startArray = starts.ToArray();
        // Rows widened in registers, sixteen floats at a time with AVX-512: the same bits as widening each into a buffer first;
        // on the 2-core CPU OPT-125m decoded 2.97 times faster (float16, attended on the CPU), with rows fetched ahead
        // (docs/perf/cpu-attention-in-registers/).
        var inRegisters = InRegisters && InvariantAttentionRows.Supports(d);
        if (inRegisters && group > 1)
        {
            SharedHeads(qp, kp, ksb, ksh, ksl, vp, vsb, vsh, vsl, op, b, h, d, group, length, element, kind, scale, startArray);
            return output;
        }
        Parallel.For(0, b * h, () => new Work((int)length, (int)d), (bh, _, work) =>
        {
            long sb = bh / h, sh = bh % h, kvh = sh / group;
            var start = startArray[sb];
            var n = (int)(length - start);
            var keyBase = kp + (sb * ksb + kvh * ksh + start * ksl) * element;
            var valueBase = vp + (sb * vsb + kvh * vsh + start * vsl) * element;
            var outRow = op + bh * d * element;
            if (inRegisters)
            {
                fixed (float* scores = work.Scores, sums = work.Sums, parts = work.Values)
                {
                    var query = qp + bh * d;
                    var total = kind switch
                    {
                        Element.Half => InvariantAttentionRows.Head<InvariantAttentionRows.HalfRow>(query, keyBase, ksl * element, valueBase, vsl * element,
                            n, (int)d, scale, scores, sums, parts),
                        Element.BFloat16 => InvariantAttentionRows.Head<InvariantAttentionRows.BFloat16Row>(query, keyBase, ksl * element, valueBase,
                            vsl * element, n, (int)d, scale, scores, sums, parts),
                        _ => InvariantAttentionRows.Head<InvariantAttentionRows.FloatRow>(query, keyBase, ksl * element, valueBase, vsl * element,
                            n, (int)d, scale, scores, sums, parts),
                    };
                    WriteContexts(outRow, 1, (int)d, parts, &total, kind);
                }
                return work;
            }
            var queryRow = new ReadOnlySpan<float>(qp + bh * d, (int)d);
            var scoreSpan = work.Scores.AsSpan(0, n);
            for (var r = 0; r < n; r++)
                scoreSpan[r] = Score(queryRow, Row(keyBase + r * ksl * element, (int)d, kind, work.Row), work.Lanes) * scale;
            var max = float.NegativeInfinity;
            foreach (var s in scoreSpan) max = MathF.Max(max, s);
            var sumParts = work.Sums;
            Array.Clear(sumParts);
            for (var r = 0; r < n; r++)
            {
                var e = Exp(scoreSpan[r] - max);
                scoreSpan[r] = e;
                sumParts[r % SumParts] += e;
            }
            for (var stride = SumParts / 2; stride > 0; stride /= 2)
                for (var t = 0; t < stride; t++) sumParts[t] += sumParts[t + stride];
            var sum = sumParts[0];
            var valueParts = work.Values;
            Array.Clear(valueParts);
            for (var r = 0; r < n; r++)
                MultiplyAdd(scoreSpan[r], Row(valueBase + r * vsl * element, (int)d, kind, work.Row), valueParts.AsSpan((r % ValueParts) * (int)d, (int)d));
            for (var i = 0; i < d; i++)
                Write(outRow, i, ((valueParts[i] + valueParts[d + i]) + (valueParts[2 * d + i] + valueParts[3 * d + i])) / sum, kind);
            return work;
        }, _ => { });
        return output;
    }

    /// <summary>
    /// <see cref="OnCpu"/> where query heads share key/value heads: a (sequence, key/value head) at a time, each key and value
    /// row widened once for the heads that share it (<see cref="InvariantAttentionRows.SharedHeads{TRow}"/>).
    /// </summary>
    private static unsafe void SharedHeads(float* qp, byte* kp, long ksb, long ksh, long ksl, byte* vp, long vsb, long vsh, long vsl, byte* op,
        long b, long h, long d, long group, long length, long element, Element kind, float scale, int[] starts)
    {
        var kvHeads = h / group;
        Parallel.For(0, b * kvHeads, () => new HeadsWork((int)length, (int)d, (int)group), (item, _, work) =>
        {
            long sb = item / kvHeads, kvh = item % kvHeads, first = kvh * group;
            var start = starts[sb];
            var n = (int)(length - start);
            var keyBase = kp + (sb * ksb + kvh * ksh + start * ksl) * element;
            var valueBase = vp + (sb * vsb + kvh * vsh + start * vsl) * element;
            fixed (float* scores = work.Scores, sums = work.Sums, parts = work.Values, totals = work.Totals, row = work.Row)
            {
                var query = qp + (sb * h + first) * d;
                switch (kind)
                {
                    case Element.Half:
                        InvariantAttentionRows.SharedHeads<InvariantAttentionRows.HalfRow>(query, (int)group, keyBase, ksl * element, valueBase,
                            vsl * element, n, (int)d, scale, scores, sums, parts, totals, row);
                        break;
                    case Element.BFloat16:
                        InvariantAttentionRows.SharedHeads<InvariantAttentionRows.BFloat16Row>(query, (int)group, keyBase, ksl * element, valueBase,
                            vsl * element, n, (int)d, scale, scores, sums, parts, totals, row);
                        break;
                    default:
                        InvariantAttentionRows.SharedHeads<InvariantAttentionRows.FloatRow>(query, (int)group, keyBase, ksl * element, valueBase,
                            vsl * element, n, (int)d, scale, scores, sums, parts, totals, row);
                        break;
                }
                WriteContexts(op + (sb * h + first) * d * element, (int)group, (int)d, parts, totals, kind);
            }
            return work;
        }, _ => { });
    }

    /// <summary>Each of <paramref name="count"/> heads' contexts, its parts' first d floats over its weights' sum, in the cache's type.</summary>
    private static unsafe void WriteContexts(byte* output, int count, int d, float* parts, float* totals, Element kind)
    {
        for (var j = 0; j < count; j++)
        {
            var outRow = output + (long)j * d * (kind == Element.Float ? 4 : 2);
            var context = parts + j * ValueParts * d;
            for (var i = 0; i < d; i++) Write(outRow, i, context[i] / totals[j], kind);
        }
    }

    /// <summary>
    /// <see cref="Decode"/> on the CPU over a 4-bit compressed cache's first positions followed by this step's exact key and
    /// value: the bits of <see cref="Decode"/> over the cache expanded by <see cref="CacheCompression.DecompressInto"/> with the
    /// new entries written after it, without expanding it. The cache's L positions as <see cref="CacheCodes"/>, the new keys
    /// and values [B, kv heads, 1, d], the queries [B, heads, 1, d]; <paramref name="starts"/>[b] (at most L) is the first
    /// position sequence b attends. Only where <see cref="AttendsCodes"/> says so.
    /// </summary>
    public static unsafe Tensor DecodeCodes(Tensor q, CacheCodes prefix, Tensor newKeys, Tensor newValues, IReadOnlyList<int> starts)
    {
        var (keyCodes, keyRanges, valueCodes, valueRanges) = (prefix.KeyCodes, prefix.KeyRanges, prefix.ValueCodes, prefix.ValueRanges);
        long b = q.size(0), h = q.size(1), d = q.size(3), kvHeads = newKeys.size(1), length = keyCodes.size(0);
        var dtype = q.dtype;
        var groupSize = CacheCompression.GroupSizeFor(kvHeads * d);
        if (!AttendsCodes(d, kvHeads * d))
            throw new ArgumentException($"heads of {d} over groups of {groupSize} are not attended from their codes on this CPU", nameof(prefix));
        if (q.device_type != DeviceType.CPU || keyCodes.device_type != DeviceType.CPU || valueCodes.device_type != DeviceType.CPU)
            throw new ArgumentException("attention from codes runs on the CPU", nameof(q));
        if (q.size(2) != 1 || newKeys.size(2) != 1 || newValues.size(2) != 1)
            throw new ArgumentException("attention from codes takes one query, key and value per sequence", nameof(q));
        if (h % kvHeads != 0) throw new ArgumentException($"{h} query heads cannot share {kvHeads} key/value heads", nameof(newKeys));
        if (dtype is not (ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Float32) || newKeys.dtype != dtype || newValues.dtype != dtype
            || keyRanges.dtype != dtype || valueRanges.dtype != dtype)
            throw new ArgumentException($"queries, new keys and values and the ranges must share one of float16, bfloat16 or float32 (got {dtype})", nameof(q));
        if (keyCodes.dtype != ScalarType.Byte || valueCodes.dtype != ScalarType.Byte) throw new ArgumentException("codes are bytes", nameof(prefix));
        long groups = kvHeads * d / groupSize;
        foreach (var (codes, ranges, what) in new[] { (keyCodes, keyRanges, "keys"), (valueCodes, valueRanges, "values") })
        {
            if (codes.dim() != 3 || codes.size(0) != length || codes.size(1) != b || codes.size(2) != kvHeads * d / 2 || codes.stride(2) != 1)
                throw new ArgumentException($"{what}' codes must be [{length}, {b}, {kvHeads * d / 2}] with contiguous rows (got [{string.Join(", ", codes.shape)}])", nameof(prefix));
            if (ranges.dim() != 4 || ranges.size(0) != length || ranges.size(1) != b || ranges.size(2) != groups || ranges.size(3) != 2
                || ranges.stride(3) != 1 || ranges.stride(2) != 2)
                throw new ArgumentException($"{what}' ranges must be [{length}, {b}, {groups}, 2] with contiguous rows (got [{string.Join(", ", ranges.shape)}])", nameof(prefix));
        }
        if (newKeys.size(0) != b || newValues.size(0) != b || newValues.size(1) != kvHeads || newKeys.size(3) != d || newValues.size(3) != d
            || newKeys.stride(3) != 1 || newValues.stride(3) != 1)
            throw new ArgumentException($"new keys and values must be [{b}, {kvHeads}, 1, {d}] with contiguous heads", nameof(newKeys));
        if (starts.Count != b) throw new ArgumentException($"{starts.Count} starts for {b} sequences", nameof(starts));
        for (var i = 0; i < b; i++)
            if (starts[i] < 0 || starts[i] > length)
                throw new ArgumentException($"sequence {i} starts at {starts[i]}, outside the {length + 1} attended positions", nameof(starts));

        long group = h / kvHeads, element = dtype == ScalarType.Float32 ? 4 : 2;
        using var queries = q.to_type(ScalarType.Float32).contiguous();
        var output = empty([b, 1, h * d], dtype);
        var qp = (float*)TensorData.Pointer(queries);
        var op = (byte*)TensorData.Pointer(output);
        byte* kcp = (byte*)TensorData.Pointer(keyCodes), krp = (byte*)TensorData.Pointer(keyRanges);
        byte* vcp = (byte*)TensorData.Pointer(valueCodes), vrp = (byte*)TensorData.Pointer(valueRanges);
        // Contiguous (one row each, a copy only where they are views): a key/value head d elements on, a sequence kv heads x d.
        using var newKeyRows = newKeys.contiguous();
        using var newValueRows = newValues.contiguous();
        byte* nkp = (byte*)TensorData.Pointer(newKeyRows), nvp = (byte*)TensorData.Pointer(newValueRows);
        long kcl = keyCodes.stride(0), kcb = keyCodes.stride(1), vcl = valueCodes.stride(0), vcb = valueCodes.stride(1);
        long krl = keyRanges.stride(0) * element, krb = keyRanges.stride(1) * element, vrl = valueRanges.stride(0) * element, vrb = valueRanges.stride(1) * element;
        long newRow = kvHeads * d * element, newHead = d * element;
        var kind = dtype switch { ScalarType.Float16 => Element.Half, ScalarType.BFloat16 => Element.BFloat16, _ => Element.Float };
        var scale = 1f / MathF.Sqrt(d);
        var startArray = starts.ToArray();
        var rangeHeadBytes = d / groupSize * 2 * element;
        // Work in chunks of whole key/value heads' query heads, eight or more, of a sequence, all read row by row together.
        var chunk = (int)Math.Min(h, (CodeHeadsPerChunk + group - 1) / group * group);
        var chunks = (h + chunk - 1) / chunk;
        Parallel.For(0, b * chunks, () => new HeadsWork((int)length + 1, (int)d, chunk), (item, _, work) =>
        {
            long sb = item / chunks, first = item % chunks * chunk;
            var count = (int)Math.Min(chunk, h - first);
            var start = startArray[sb];
            var m = (int)(length - start);
            var keys = new InvariantAttentionRows.CodeRows(kcp + start * kcl + sb * kcb, kcl, krp + start * krl + sb * krb, krl);
            var values = new InvariantAttentionRows.CodeRows(vcp + start * vcl + sb * vcb, vcl, vrp + start * vrl + sb * vrb, vrl);
            fixed (float* scores = work.Scores, sums = work.Sums, parts = work.Values, totals = work.Totals)
            {
                var query = qp + (sb * h + first) * d;
                switch (kind)
                {
                    case Element.Half:
                        InvariantAttentionRows.HeadsCodes<InvariantAttentionRows.HalfCodes, InvariantAttentionRows.HalfRow>(query, (int)first, count,
                            (int)group, keys, values, rangeHeadBytes, nkp + sb * newRow, nvp + sb * newRow, newHead, m, (int)d,
                            groupSize, scale, scores, sums, parts, totals);
                        break;
                    case Element.BFloat16:
                        InvariantAttentionRows.HeadsCodes<InvariantAttentionRows.BFloat16Codes, InvariantAttentionRows.BFloat16Row>(query, (int)first,
                            count, (int)group, keys, values, rangeHeadBytes, nkp + sb * newRow, nvp + sb * newRow, newHead, m,
                            (int)d, groupSize, scale, scores, sums, parts, totals);
                        break;
                    default:
                        InvariantAttentionRows.HeadsCodes<InvariantAttentionRows.FloatCodes, InvariantAttentionRows.FloatRow>(query, (int)first, count,
                            (int)group, keys, values, rangeHeadBytes, nkp + sb * newRow, nvp + sb * newRow, newHead, m, (int)d,
                            groupSize, scale, scores, sums, parts, totals);
                        break;
                }
                WriteContexts(op + (sb * h + first) * d * element, count, (int)d, parts, totals, kind);
            }
            return work;
        }, _ => { });
        return output;
    }

    /// <summary>
    /// Whether <see cref="DecodeCodes"/> takes heads of <paramref name="headDim"/> in a cache of <paramref name="hiddenSize"/> (its
    /// groups within whole heads, AVX-512); elsewhere a compressed cache is expanded and attended by <see cref="Decode"/>.
    /// </summary>
    public static bool AttendsCodes(long headDim, long hiddenSize) =>
        hiddenSize % 2 == 0 && InvariantAttentionRows.SupportsCodes(headDim, CacheCompression.GroupSizeFor(hiddenSize));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Write(byte* row, long i, float value, Element kind)
    {
        switch (kind)
        {
            case Element.Half: ((Half*)row)[i] = (Half)value; break;
            case Element.BFloat16: ((ushort*)row)[i] = ToBFloat16(value); break;
            default: ((float*)row)[i] = value; break;
        }
    }

    /// <summary>Query heads of a sequence attended together from codes, at least (<see cref="DecodeCodes"/>).</summary>
    private const int CodeHeadsPerChunk = 8;

    /// <summary>A worker's buffers for several heads of a sequence at once (<see cref="DecodeCodes"/>, <see cref="SharedHeads"/>).</summary>
    private sealed class HeadsWork(int length, int dim, int heads)
    {
        public readonly float[] Scores = new float[heads * length], Sums = new float[heads * SumParts], Values = new float[heads * ValueParts * dim],
            Totals = new float[heads], Row = new float[dim];
    }

    private sealed class Work(int length, int dim)
    {
        public readonly float[] Scores = new float[length], Sums = new float[SumParts], Values = new float[ValueParts * dim], Row = new float[dim],
            Lanes = new float[ScoreLanes];
    }

    private enum Element { Half, BFloat16, Float }

    private static unsafe ReadOnlySpan<float> Row(byte* at, int dim, Element kind, float[] buffer)
    {
        switch (kind)
        {
            case Element.Float:
                return new ReadOnlySpan<float>(at, dim);
            case Element.Half:
                TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(at, dim), buffer);
                return buffer;
            default:
                var raw = (ushort*)at;
                for (var i = 0; i < dim; i++) buffer[i] = BitConverter.Int32BitsToSingle(raw[i] << 16);
                return buffer;
        }
    }

    /// <summary>A float rounded to bfloat16 to nearest, ties to even (as the kernel's cvt.rn.bf16.f32); NaN stays NaN.</summary>
    internal static ushort ToBFloat16(float value)
    {
        var bits = (uint)BitConverter.SingleToInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    /// <summary>A query-key product as the kernel's warp forms it: 32 lanes of fused multiply-adds, folded pairwise.</summary>
    internal static float Score(ReadOnlySpan<float> q, ReadOnlySpan<float> k, float[] lanes)
    {
        var d = q.Length;
        if (d == 4 * ScoreLanes && Fma.IsSupported)
        {
            ref var qr = ref MemoryMarshal.GetReference(q);
            ref var kr = ref MemoryMarshal.GetReference(k);
            // Lanes 0-7, 8-15, 16-23, 24-31 as four vectors; element i * 32 + l goes to lane l.
            Vector256<float> p0 = Vector256<float>.Zero, p1 = p0, p2 = p0, p3 = p0;
            for (var i = 0; i < 4; i++)
            {
                var o = i * ScoreLanes;
                p0 = Fma.MultiplyAdd(Load(ref qr, o), Load(ref kr, o), p0);
                p1 = Fma.MultiplyAdd(Load(ref qr, o + 8), Load(ref kr, o + 8), p1);
                p2 = Fma.MultiplyAdd(Load(ref qr, o + 16), Load(ref kr, o + 16), p2);
                p3 = Fma.MultiplyAdd(Load(ref qr, o + 24), Load(ref kr, o + 24), p3);
            }
            // Lane l with l + 16, then + 8: vectors (0 + 2) + (1 + 3) in that pairing.
            var a0 = Avx.Add(p0, p2);
            var a1 = Avx.Add(p1, p3);
            var bq = Avx.Add(a0, a1);
            var lo = bq.GetLower();
            var hi = bq.GetUpper();
            var c = Sse.Add(lo, hi);
            var e0 = c.GetElement(0) + c.GetElement(2);
            var e1 = c.GetElement(1) + c.GetElement(3);
            return e0 + e1;
        }
        Array.Clear(lanes);
        for (var i = 0; i < d; i++) lanes[i % ScoreLanes] = MathF.FusedMultiplyAdd(q[i], k[i], lanes[i % ScoreLanes]);
        for (var offset = ScoreLanes / 2; offset > 0; offset /= 2)
            for (var l = 0; l < offset; l++) lanes[l] += lanes[l + offset];
        return lanes[0];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Load(ref float at, int offset) => Vector256.LoadUnsafe(ref at, (nuint)offset);

    /// <summary>part[i] = fma(weight, row[i], part[i]).</summary>
    private static void MultiplyAdd(float weight, ReadOnlySpan<float> row, Span<float> part)
    {
        var i = 0;
        if (Fma.IsSupported)
        {
            var w = Vector256.Create(weight);
            ref var rr = ref MemoryMarshal.GetReference(row);
            ref var pr = ref MemoryMarshal.GetReference(part);
            for (; i + 8 <= row.Length; i += 8)
                Fma.MultiplyAdd(w, Vector256.LoadUnsafe(ref rr, (nuint)i), Vector256.LoadUnsafe(ref pr, (nuint)i)).StoreUnsafe(ref pr, (nuint)i);
        }
        for (; i < row.Length; i++) part[i] = MathF.FusedMultiplyAdd(weight, row[i], part[i]);
    }
}
