using System.Collections.Concurrent;
using static TorchSharp.torch;

namespace ActorInfer.Model.Layers;

/// <summary>
/// Decoding attention on CUDA in one pass over the cache (<c>--decode-attention fused</c>): softmax(q k^T / sqrt(d), masked) v for
/// one query per sequence, split over the cache's length as flash-decoding splits it. A block of 128 threads takes 128 keys of
/// one (sequence, key/value head) for every query head of its group: scores in single precision from 16-byte loads of the keys,
/// the chunk's softmax, its weighted values from 16-byte loads; the last chunk of a (sequence, key/value head) to finish merges
/// the chunks' partial sums by their maxima (none where one chunk holds the whole length), in the same launch. The batched
/// products read the keys and values once as well, but around them go a scale, a mask, a softmax and three more passes over
/// the scores: on an H100, OPT-6.7B's two products took 100 us a layer at batch 32 over 544 keys, about 85 us of which the
/// cache's bytes bound (docs/perf/h100-kernels/). Compiled by NVRTC at first use per head size and group (float16 and
/// bfloat16), launched on libtorch's current stream (so a CUDA graph captures it). Where it does not apply (the CPU, single
/// precision, a head size or group it is not built for, misaligned rows) or cannot be loaded, the caller attends by the products; the last is said once. `scripts/kernels-on-cpu.py` runs the kernels'
/// C on the CPU against double precision, for checking a change to their logic without a GPU.
/// </summary>
public static unsafe class DecodeAttentionCuda
{
    /// <summary>Keys a block attends.</summary>
    public const int Chunk = 128;

    private const int Threads = 128;
    private static readonly int[] HeadDims = [16, 32, 64, 128, 256];
    private static readonly int[] Groups = [1, 2, 4, 8];
    private static readonly ConcurrentDictionary<(int Dim, int Group), Lazy<Kernels?>> Loaded = new();
    private static int _reported;

    /// <summary>Whether <see cref="TryDecode"/> is built for this head size and group of query heads per key/value head.</summary>
    public static bool Takes(long headDim, long group) => HeadDims.Contains((int)headDim) && Groups.Contains((int)group);

    /// <summary>
    /// Whether the kernel takes decoding of this type on this device at these head counts and size, and loads: a caller that
    /// plans around it (a captured layer launched over the cache's capacity) asks before it captures.
    /// </summary>
    public static bool Decodes(ScalarType dtype, Device device, long heads, long kvHeads, long headDim) =>
        dtype is ScalarType.Float16 or ScalarType.BFloat16 && device.type == TorchSharp.DeviceType.CUDA && kvHeads > 0 && heads % kvHeads == 0
        && Takes(headDim, heads / kvHeads) && Load((int)headDim, (int)(heads / kvHeads)) is not null;

    private static Kernels? Load(int headDim, int group) =>
        Loaded.GetOrAdd((headDim, group), key => new Lazy<Kernels?>(() => Kernels.TryLoad(key.Dim, key.Group),
            LazyThreadSafetyMode.ExecutionAndPublication)).Value;

    /// <summary>The context [B, 1, heads * d], or null where the kernel does not apply (the caller then attends otherwise).</summary>
    /// <param name="q">[B, heads, 1, d].</param>
    /// <param name="keys">[B, key/value heads, L, d], contiguous heads, rows 16-byte aligned (a prefix of a longer cache is fine).</param>
    /// <param name="mask">[B or 1, 1, 1, L] booleans, true where a key may be attended; null when every key may.</param>
    /// <param name="last">
    /// An Int64 tensor on the device whose first element is the last filled index of the cache: the kernel then reads the keys
    /// up to it (at most L), the length read on the device. Launched over a cache's capacity, one launch then serves every
    /// decoding step, so a CUDA graph of a layer replays at any length. The chunks past the length are empty and the merge
    /// skips them: the context is the one a launch over the filled length gives, bit for bit. Null: all L keys.
    /// </param>
    /// <param name="newKeys">
    /// The step's keys [B, key/value heads, 1, d] (a view of its projection), with <paramref name="newValues"/> (the same strides):
    /// attended from there at <paramref name="newIndex"/> (or at <paramref name="last"/>'s index, where given) and written into
    /// the cache there by the kernel, so no copy kernel writes them first. Null: the cache holds them already.
    /// </param>
    public static Tensor? TryDecode(Tensor q, Tensor keys, Tensor values, Tensor? mask, Tensor? last = null, Tensor? newKeys = null,
        Tensor? newValues = null, int newIndex = -1)
    {
        var dtype = q.dtype;
        if (dtype is not (ScalarType.Float16 or ScalarType.BFloat16) || keys.dtype != dtype || values.dtype != dtype) return null;
        if (q.device_type != TorchSharp.DeviceType.CUDA || keys.device_type != TorchSharp.DeviceType.CUDA
            || values.device_type != TorchSharp.DeviceType.CUDA) return null;
        if (q.dim() != 4 || keys.dim() != 4 || values.dim() != 4 || q.size(2) != 1) return null;
        long b = q.size(0), h = q.size(1), d = q.size(3), kvHeads = keys.size(1), length = keys.size(2);
        if (kvHeads == 0 || h % kvHeads != 0 || !Takes(d, h / kvHeads)) return null;
        if (keys.size(0) != b || values.size(0) != b || keys.size(3) != d || values.size(3) != d || values.size(1) != kvHeads
            || values.size(2) != length || length < 1 || length > int.MaxValue) return null;
        if (q.stride(3) != 1 || keys.stride(3) != 1 || values.stride(3) != 1) return null;
        if (!Aligned(keys) || !Aligned(values)) return null;
        long msb = 0;
        if (mask is not null)
        {
            if (mask.dtype != ScalarType.Bool || mask.device_type != TorchSharp.DeviceType.CUDA || mask.dim() != 4 || mask.size(3) != length
                || mask.stride(3) != 1 || (mask.size(0) != b && mask.size(0) != 1)) return null;
            msb = mask.size(0) == 1 ? 0 : mask.stride(0);
        }
        if (last is not null && (last.dtype != ScalarType.Int64 || last.device_type != TorchSharp.DeviceType.CUDA
            || last.device_index != q.device_index || last.numel() < 1)) return null;
        if ((newKeys is null) != (newValues is null)) return null;
        if (newKeys is not null && newValues is not null && !TakesRows(newKeys, newValues, q, b, kvHeads, d, last is null ? newIndex : 0, length)) return null;
        var splits = (length + Chunk - 1) / Chunk;
        if (splits > 65535 || b * kvHeads > int.MaxValue || b * h > int.MaxValue) return null;
        var kernels = Load((int)d, (int)(h / kvHeads));
        if (kernels is null) return null;
        var bf16 = dtype == ScalarType.BFloat16;

        var output = empty([b, 1, h * d], dtype, q.device);
        using var part = splits > 1 ? empty([b * h * splits * (d + 2)], ScalarType.Float32, q.device) : null;
        IntPtr qp = TensorData.Pointer(q), kp = TensorData.Pointer(keys), vp = TensorData.Pointer(values),
            mp = mask is null ? IntPtr.Zero : TensorData.Pointer(mask), pp = part is null ? IntPtr.Zero : TensorData.Pointer(part),
            op = TensorData.Pointer(output), lp = last is null ? IntPtr.Zero : TensorData.Pointer(last),
            nkp = newKeys is null ? IntPtr.Zero : TensorData.Pointer(newKeys), nvp = newValues is null ? IntPtr.Zero : TensorData.Pointer(newValues);
        long nsb = newKeys?.stride(0) ?? 0, nsh = newKeys?.stride(1) ?? 0;
        var ni = newIndex;
        long qsb = q.stride(0), qsh = q.stride(1), ksb = keys.stride(0), ksh = keys.stride(1), ksl = keys.stride(2),
            vsb = values.stride(0), vsh = values.stride(1), vsl = values.stride(2);
        int heads = (int)h, kv = (int)kvHeads, len = (int)length;
        // Scores in base-2 units: the kernels exponentiate by ex2.
        var scale2 = (float)(1.0 / Math.Sqrt(d) / Math.Log(2.0));
        var stream = InvariantAttentionCuda.Driver.CurrentStream(q.device_index);
        var dp = splits > 1 && !SeparateMerge ? Counters(q.device, stream, b * kvHeads) : IntPtr.Zero;
        var args = stackalloc void*[] { &qp, &qsb, &qsh, &kp, &ksb, &ksh, &ksl, &vp, &vsb, &vsh, &vsl, &mp, &msb, &pp, &op, &heads, &kv, &len, &lp, &scale2, &nkp, &nvp, &nsb, &nsh, &ni, &kp, &vp, &dp };
        InvariantAttentionCuda.Driver.Check(InvariantAttentionCuda.Driver.LaunchKernel(bf16 ? kernels.DecodeBFloat16 : kernels.DecodeHalf,
            (uint)(b * kvHeads), (uint)splits, 1, Threads, 1, 1, 0, stream, args, null), "cuLaunchKernel");
        if (splits > 1 && SeparateMerge)
        {
            var s = (int)splits;
            var merge = stackalloc void*[] { &pp, &op, &s };
            InvariantAttentionCuda.Driver.Check(InvariantAttentionCuda.Driver.LaunchKernel(bf16 ? kernels.MergeBFloat16 : kernels.MergeHalf,
                (uint)(b * h), 1, 1, Threads, 1, 1, 0, stream, merge, null), "cuLaunchKernel");
        }
        return output;
    }

    /// <summary>
    /// ACTORINFER_DECODE_MERGE=separate merges the chunks in a second kernel, as before the merge moved into the last chunk (for
    /// comparing the two on a GPU; the arithmetic is the same).
    /// </summary>
    private static readonly bool SeparateMerge = Environment.GetEnvironmentVariable("ACTORINFER_DECODE_MERGE") == "separate";

    private static readonly Dictionary<(int Device, IntPtr Stream), Tensor> DoneCounters = [];
    private static readonly List<Tensor> Outgrown = [];

    /// <summary>
    /// Zeroed counters, one per (sequence, key/value head), for launches on <paramref name="stream"/>: the kernel's chunks count
    /// themselves there and the last leaves its counter at zero again. Launches on one stream run one after another, so each
    /// stream has its own. An outgrown buffer is kept, not freed: a captured graph may hold its address.
    /// </summary>
    private static IntPtr Counters(Device device, IntPtr stream, long count)
    {
        lock (DoneCounters)
        {
            var key = (device.index, stream);
            if (!DoneCounters.TryGetValue(key, out var counters) || counters.numel() < count)
            {
                if (counters is not null) Outgrown.Add(counters);
                counters = zeros([Math.Max(count, 4096)], ScalarType.Int32, device).DetachFromDisposeScope();
                DoneCounters[key] = counters;
            }
            return TensorData.Pointer(counters);
        }
    }

    /// <summary>Makes the counters for launches on <paramref name="stream"/> before a capture there (so none is made inside it).</summary>
    public static void PrepareStream(Device device, IntPtr stream, long count)
    {
        if (device.type == TorchSharp.DeviceType.CUDA) Counters(device, stream, count);
    }

    /// <summary>Whether the kernel may take the step's keys and values from these views and write them at that index.</summary>
    private static bool TakesRows(Tensor newKeys, Tensor newValues, Tensor q, long b, long kvHeads, long d, int index, long length)
    {
        bool Row(Tensor t) =>
            t.dtype == q.dtype && t.device_type == TorchSharp.DeviceType.CUDA && t.device_index == q.device_index && t.dim() == 4
            && t.size(0) == b && t.size(1) == kvHeads && t.size(2) == 1 && t.size(3) == d && t.stride(3) == 1 && Aligned(t);
        return Row(newKeys) && Row(newValues) && newKeys.stride(0) == newValues.stride(0) && newKeys.stride(1) == newValues.stride(1)
            && index >= 0 && index < length;
    }

    /// <summary>
    /// Whether <see cref="AttentionMath.Attend"/> hands the step's keys and values to the kernel to write (the default) rather
    /// than copying them into the cache first (ACTORINFER_DECODE_WRITE=separate, for comparing the two; the values attended
    /// are the same).
    /// </summary>
    public static bool WritesRows { get; } = Environment.GetEnvironmentVariable("ACTORINFER_DECODE_WRITE") != "separate";

    // 16-byte loads of 8 elements: the rows' start and every stride in whole 8-element steps.
    private static bool Aligned(Tensor t) =>
        (long)TensorData.Pointer(t) % 16 == 0 && t.stride(0) % 8 == 0 && t.stride(1) % 8 == 0 && t.stride(2) % 8 == 0;

    /// <summary>The kernels' CUDA C for one head size and group (no headers: conversions and the exponential by PTX).</summary>
    internal static string Source(int headDim, int group) => $$"""
        #define DIM {{headDim}}
        #define GROUP {{group}}
        #define CHUNK {{Chunk}}
        #define THREADS {{Threads}}
        #define NEG_INF __int_as_float(0xff800000)
        {{CudaSource.HalfWidening}}
        template <bool BF> __device__ __forceinline__ float load1(const u16* p) { return lo<BF>((u32)*p); }
        template <bool BF> __device__ __forceinline__ u16 store1(float f);
        template <> __device__ __forceinline__ u16 store1<false>(float f) { u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
        template <> __device__ __forceinline__ u16 store1<true>(float f) { u16 h; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
        __device__ __forceinline__ float ex2(float x) { float r; asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x)); return r; }

        template <bool BF> __device__ __forceinline__ void unpack(const V8& v, float* f) {
            _Pragma("unroll") for (int i = 0; i < 4; i++) { f[2 * i] = lo<BF>(v.a[i]); f[2 * i + 1] = hi<BF>(v.a[i]); }
        }

        // Lanes per key row (8 elements each), rows per warp, rows per block pass, passes over the chunk, loads in flight.
        constexpr int LPR = DIM / 8, RPW = 32 / LPR, RPB = THREADS / LPR, PASSES = CHUNK / RPB, UNROLL = PASSES < 4 ? PASSES : 4;

        // A pass's rows of keys or values (this lane's 8 elements of each) into registers, zeros past the chunk's n; row tnew
        // from the step's own row (own) rather than the cache.
        __device__ __forceinline__ void rows(V8* raw, const u16* __restrict__ base, long long stride, const u16* __restrict__ own, int sub,
            int row0, int p0, int n, int t0, int tnew) {
            _Pragma("unroll") for (int u = 0; u < UNROLL; u++) {
                const int r = row0 + (p0 + u) * RPB;
                if (r < n) raw[u] = t0 + r == tnew ? *reinterpret_cast<const V8*>(own + sub * 8) : *reinterpret_cast<const V8*>(base + (long long)r * stride);
                else { raw[u].a[0] = 0u; raw[u].a[1] = 0u; raw[u].a[2] = 0u; raw[u].a[3] = 0u; }
            }
        }

        // Block (sequence and key/value head, chunk): the chunk's softmax numerators summed over its values, with its maximum
        // and sum; written whole (divided by the sum) where one chunk holds the length.
        template <bool BF> __device__ __forceinline__ void chunk(
            const u16* __restrict__ q, long long qsb, long long qsh,
            const u16* __restrict__ k, long long ksb, long long ksh, long long ksl,
            const u16* __restrict__ v, long long vsb, long long vsh, long long vsl,
            const unsigned char* __restrict__ mask, long long msb, float* __restrict__ part, u16* __restrict__ out,
            int heads, int kvHeads, int length, const long long* __restrict__ last, float scale2,
            const u16* __restrict__ nk, const u16* __restrict__ nv, long long nsb, long long nsh, int newIndex, u16* kw, u16* vw) {
            __shared__ float qs[GROUP][DIM];
            __shared__ float sc[GROUP][CHUNK];
            __shared__ float red[RPB][DIM];
            __shared__ float stat[GROUP][2];
            const int bk = blockIdx.x, split = blockIdx.y, splits = gridDim.y;
            const int b = bk / kvHeads, kvh = bk - b * kvHeads;
            const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
            const int sub = lane % LPR, row0 = warp * RPW + lane / LPR;
            // The filled length read on the device (a launch over the capacity): the chunks past it hold no keys.
            if (last != nullptr) length = min(length, (int)(*last) + 1);
            const int t0 = split * CHUNK, n = min(CHUNK, length - t0);
            // The step's own key and value (nk, nv: [B, key/value heads] rows of the projection), where given: attended from
            // there at index tnew, and written into the cache there by the block whose chunk holds it (for the steps after).
            const int tnew = nk == nullptr ? -1 : last != nullptr ? (int)(*last) : newIndex;
            const u16* nkb = nk == nullptr ? nullptr : nk + b * nsb + kvh * nsh;
            const u16* nvb = nv == nullptr ? nullptr : nv + b * nsb + kvh * nsh;
            if (tnew >= t0 && tnew < t0 + n) {
                for (int i = tid; i < DIM / 8; i += THREADS) {
                    *reinterpret_cast<V8*>(kw + b * ksb + kvh * ksh + (long long)tnew * ksl + i * 8) = *reinterpret_cast<const V8*>(nkb + i * 8);
                    *reinterpret_cast<V8*>(vw + b * vsb + kvh * vsh + (long long)tnew * vsl + i * 8) = *reinterpret_cast<const V8*>(nvb + i * 8);
                }
            }
            if (n <= 0) {
                for (int g = tid; g < GROUP; g += THREADS) {
                    const long long bh = (long long)b * heads + kvh * GROUP + g;
                    if (splits > 1) { float* rec = part + (bh * splits + split) * (DIM + 2); rec[0] = NEG_INF; rec[1] = 0.0f; }
                    else for (int d = 0; d < DIM; d++) out[bh * DIM + d] = store1<BF>(0.0f);
                }
                return;
            }
            for (int i = tid; i < GROUP * DIM; i += THREADS) {
                const int g = i / DIM, d = i - g * DIM;
                qs[g][d] = load1<BF>(q + b * qsb + (long long)(kvh * GROUP + g) * qsh + d) * scale2;
            }
            __syncthreads();
            float qr[GROUP][8];
            _Pragma("unroll") for (int g = 0; g < GROUP; g++) { _Pragma("unroll") for (int j = 0; j < 8; j++) qr[g][j] = qs[g][sub * 8 + j]; }
            const u16* kb = k + b * ksb + kvh * ksh + (long long)t0 * ksl + sub * 8;
            const unsigned char* mb = mask ? mask + b * msb + t0 : nullptr;
            _Pragma("unroll 1") for (int p0 = 0; p0 < PASSES; p0 += UNROLL) {
                V8 raw[UNROLL];
                rows(raw, kb, ksl, nkb, sub, row0, p0, n, t0, tnew);
                _Pragma("unroll") for (int u = 0; u < UNROLL; u++) {
                    float f[8];
                    unpack<BF>(raw[u], f);
                    const int r = row0 + (p0 + u) * RPB;
                    _Pragma("unroll") for (int g = 0; g < GROUP; g++) {
                        float s = 0.0f;
                        _Pragma("unroll") for (int j = 0; j < 8; j++) s = fmaf(qr[g][j], f[j], s);
                        _Pragma("unroll") for (int o = LPR / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
                        if (sub == 0 && r < n) sc[g][r] = (mb == nullptr || mb[r]) ? s : NEG_INF;
                    }
                }
            }
            __syncthreads();
            for (int g = warp; g < GROUP; g += THREADS / 32) {
                float m = NEG_INF;
                for (int r = lane; r < n; r += 32) m = fmaxf(m, sc[g][r]);
                _Pragma("unroll") for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
                float l = 0.0f;
                for (int r = lane; r < n; r += 32) { const float e = m == NEG_INF ? 0.0f : ex2(sc[g][r] - m); sc[g][r] = e; l += e; }
                _Pragma("unroll") for (int o = 16; o > 0; o >>= 1) l += __shfl_xor_sync(0xffffffffu, l, o);
                if (lane == 0) { stat[g][0] = m; stat[g][1] = l; }
            }
            __syncthreads();
            float acc[GROUP][8];
            _Pragma("unroll") for (int g = 0; g < GROUP; g++) { _Pragma("unroll") for (int j = 0; j < 8; j++) acc[g][j] = 0.0f; }
            const u16* vb = v + b * vsb + kvh * vsh + (long long)t0 * vsl + sub * 8;
            _Pragma("unroll 1") for (int p0 = 0; p0 < PASSES; p0 += UNROLL) {
                V8 raw[UNROLL];
                rows(raw, vb, vsl, nvb, sub, row0, p0, n, t0, tnew);
                _Pragma("unroll") for (int u = 0; u < UNROLL; u++) {
                    float f[8];
                    unpack<BF>(raw[u], f);
                    const int r = row0 + (p0 + u) * RPB;
                    _Pragma("unroll") for (int g = 0; g < GROUP; g++) {
                        const float e = r < n ? sc[g][r] : 0.0f;
                        _Pragma("unroll") for (int j = 0; j < 8; j++) acc[g][j] = fmaf(e, f[j], acc[g][j]);
                    }
                }
            }
            _Pragma("unroll") for (int g = 0; g < GROUP; g++) {
                _Pragma("unroll") for (int j = 0; j < 8; j++) red[row0][sub * 8 + j] = acc[g][j];
                __syncthreads();
                const long long bh = (long long)b * heads + kvh * GROUP + g;
                for (int d = tid; d < DIM; d += THREADS) {
                    float s = 0.0f;
                    for (int i = 0; i < RPB; i++) s += red[i][d];
                    if (splits == 1) {
                        const float l = stat[g][1];
                        out[bh * DIM + d] = store1<BF>(l > 0.0f ? s / l : 0.0f);
                    } else {
                        float* rec = part + (bh * splits + split) * (DIM + 2);
                        if (d == 0) { rec[0] = stat[g][0]; rec[1] = stat[g][1]; }
                        rec[2 + d] = s;
                    }
                }
                __syncthreads();
            }
        }

        // Query head bh: the chunks' partial sums merged by their maxima (read past the L1 cache: other blocks wrote them).
        template <bool BF> __device__ __forceinline__ void merge(const float* part, u16* __restrict__ out, int splits, long long bh) {
            const volatile float* rec = part + bh * splits * (DIM + 2);
            float big = NEG_INF;
            for (int s = 0; s < splits; s++) big = fmaxf(big, rec[s * (DIM + 2)]);
            float total = 0.0f;
            for (int s = 0; s < splits; s++) { const float m = rec[s * (DIM + 2)]; if (m != NEG_INF) total += ex2(m - big) * rec[s * (DIM + 2) + 1]; }
            for (int d = threadIdx.x; d < DIM; d += THREADS) {
                float a = 0.0f;
                for (int s = 0; s < splits; s++) { const float m = rec[s * (DIM + 2)]; if (m != NEG_INF) a += ex2(m - big) * rec[s * (DIM + 2) + 2 + d]; }
                out[bh * DIM + d] = store1<BF>(total > 0.0f ? a / total : 0.0f);
            }
        }

        #define DECODE_ARGS const u16* q, long long qsb, long long qsh, const u16* k, long long ksb, long long ksh, long long ksl, \
            const u16* v, long long vsb, long long vsh, long long vsl, const unsigned char* mask, long long msb, float* part, u16* out, \
            int heads, int kvHeads, int length, const long long* last, float scale2, \
            const u16* nk, const u16* nv, long long nsb, long long nsh, int newIndex, u16* kw, u16* vw
        #define DECODE_PASS q, qsb, qsh, k, ksb, ksh, ksl, v, vsb, vsh, vsl, mask, msb, part, out, heads, kvHeads, length, last, scale2, \
            nk, nv, nsb, nsh, newIndex, kw, vw

        // A chunk, then, in the last of a (sequence, key/value head)'s chunks to finish, the merge of its group's query heads: the
        // blocks count themselves in done[] (left at zero again by the last), so no second kernel waits on the first.
        template <bool BF> __device__ __forceinline__ void decode(DECODE_ARGS, unsigned int* done) {
            chunk<BF>(DECODE_PASS);
            if (gridDim.y == 1 || done == nullptr) return;
            __shared__ unsigned int lastBlock;
            __threadfence();
            __syncthreads();
            if (threadIdx.x == 0) lastBlock = atomicAdd(done + blockIdx.x, 1u) == gridDim.y - 1 ? 1u : 0u;
            __syncthreads();
            if (lastBlock == 0u) return;
            __threadfence();
            const int kvh = blockIdx.x % kvHeads, b = blockIdx.x / kvHeads;
            for (int g = 0; g < GROUP; g++) merge<BF>(part, out, gridDim.y, (long long)b * heads + kvh * GROUP + g);
            if (threadIdx.x == 0) done[blockIdx.x] = 0u;
        }
        extern "C" __global__ void __launch_bounds__(THREADS) decode_half(DECODE_ARGS, unsigned int* done) { decode<false>(DECODE_PASS, done); }
        extern "C" __global__ void __launch_bounds__(THREADS) decode_bf16(DECODE_ARGS, unsigned int* done) { decode<true>(DECODE_PASS, done); }
        // The merge as a kernel of its own (ACTORINFER_DECODE_MERGE=separate): block (sequence and query head).
        extern "C" __global__ void __launch_bounds__(THREADS) merge_half(const float* part, u16* out, int splits) { merge<false>(part, out, splits, blockIdx.x); }
        extern "C" __global__ void __launch_bounds__(THREADS) merge_bf16(const float* part, u16* out, int splits) { merge<true>(part, out, splits, blockIdx.x); }
        """;

    private sealed class Kernels
    {
        public IntPtr DecodeHalf, DecodeBFloat16, MergeHalf, MergeBFloat16;

        public static Kernels? TryLoad(int headDim, int group)
        {
            try
            {
                var module = InvariantAttentionCuda.Driver.LoadModule(Source(headDim, group), $"decode_attention_{headDim}_{group}.cu", exact: false);
                return new Kernels
                {
                    DecodeHalf = InvariantAttentionCuda.Driver.Function(module, "decode_half"),
                    DecodeBFloat16 = InvariantAttentionCuda.Driver.Function(module, "decode_bf16"),
                    MergeHalf = InvariantAttentionCuda.Driver.Function(module, "merge_half"),
                    MergeBFloat16 = InvariantAttentionCuda.Driver.Function(module, "merge_bf16"),
                };
            }
            catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException or InvalidOperationException or TypeInitializationException
                or System.Runtime.InteropServices.ExternalException)
            {
                if (Interlocked.Exchange(ref _reported, 1) == 0)
                    Console.Error.WriteLine($"decoding attention: the fused kernel could not be loaded; attending by batched products ({ex.Message})");
                return null;
            }
        }
    }
}
