using static TorchSharp.torch;

namespace ActorInfer.Model.Layers;

/// <summary>
/// LayerNorm over the last dimension on CUDA in one kernel, a block of 256 threads per row: the row read once into registers by
/// 16-byte loads, its mean and then its variance about the mean reduced in single precision, the normalized row scaled and
/// shifted and stored by 16-byte stores. libtorch's kernel took 8.2 us a call for a decoding step's 32 rows of 4,096 on an
/// H100, two calls a layer, about 5% of an OPT-6.7B decoding layer's kernels (docs/perf/h100-kernels/). float16 and bfloat16,
/// rows a multiple of 8 up to 16,384 long, with a weight and a bias; elsewhere, or where it cannot be loaded (said once), the
/// caller uses libtorch's. <c>ACTORINFER_LAYER_NORM=operations</c> keeps libtorch's, for comparing the two on one machine.
/// `scripts/kernels-on-cpu.py` runs the kernel's C on the CPU.
/// </summary>
internal static unsafe class LayerNormCuda
{
    private const int Threads = 256;
    private const int MaxVectors = 8;
    private static readonly Lazy<Kernels?> Loaded = new(Kernels.TryLoad, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The normalized <paramref name="x"/> (a new tensor), or null where the kernel does not apply.</summary>
    public static Tensor? TryNorm(Tensor x, Tensor? weight, Tensor? bias, double eps)
    {
        if (weight is null || bias is null || x.device_type != TorchSharp.DeviceType.CUDA) return null;
        var dtype = x.dtype;
        if (dtype is not (ScalarType.Float16 or ScalarType.BFloat16) || weight.dtype != dtype || bias.dtype != dtype) return null;
        var n = x.size(-1);
        if (n % 8 != 0 || n > Threads * 8 * MaxVectors || weight.numel() != n || bias.numel() != n) return null;
        if (!x.is_contiguous() || !weight.is_contiguous() || !bias.is_contiguous()) return null;
        if (weight.device_type != TorchSharp.DeviceType.CUDA || bias.device_type != TorchSharp.DeviceType.CUDA) return null;
        var rows = x.numel() / Math.Max(1, n);
        if (rows == 0 || rows > int.MaxValue) return null;
        IntPtr xp = TensorData.Pointer(x), wp = TensorData.Pointer(weight), bp = TensorData.Pointer(bias);
        if ((long)xp % 16 != 0 || (long)wp % 16 != 0 || (long)bp % 16 != 0) return null;
        if (Loaded.Value is not { } kernels) return null;
        var vectors = (int)((n / 8 + Threads - 1) / Threads);
        var slot = vectors <= 1 ? 0 : vectors <= 2 ? 1 : vectors <= 4 ? 2 : 3;
        var function = (dtype == ScalarType.BFloat16 ? kernels.BFloat16 : kernels.Half)[slot];
        var y = empty(x.shape, dtype, x.device);
        var yp = TensorData.Pointer(y);
        var width = (int)n;
        var epsilon = (float)eps;
        var args = stackalloc void*[] { &xp, &wp, &bp, &yp, &width, &epsilon };
        var stream = InvariantAttentionCuda.Driver.CurrentStream(x.device_index);
        InvariantAttentionCuda.Driver.Check(InvariantAttentionCuda.Driver.LaunchKernel(function, (uint)rows, 1, 1, Threads, 1, 1, 0, stream, args, null),
            "cuLaunchKernel");
        return y;
    }

    /// <summary>The kernels' CUDA C (no headers: conversions and the reciprocal square root by PTX).</summary>
    internal static string Source() => $$"""
        #define THREADS {{Threads}}
        {{CudaSource.HalfWidening}}
        template <bool BF> __device__ __forceinline__ u32 pack(float a, float b);
        template <> __device__ __forceinline__ u32 pack<false>(float a, float b) {
            u16 l, h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(l) : "f"(a)); asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(b)); return (u32)l | ((u32)h << 16);
        }
        template <> __device__ __forceinline__ u32 pack<true>(float a, float b) {
            u16 l, h; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(l) : "f"(a)); asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(b)); return (u32)l | ((u32)h << 16);
        }
        __device__ __forceinline__ float rsqrt_approx(float x) { float r; asm("rsqrt.approx.f32 %0, %1;" : "=f"(r) : "f"(x)); return r; }

        // The block's sum of each thread's v (every thread gets it).
        __device__ __forceinline__ float block_sum(float v, float* shared) {
            _Pragma("unroll") for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
            if (lane == 0) shared[warp] = v;
            __syncthreads();
            float total = 0.0f;
            _Pragma("unroll") for (int w = 0; w < THREADS / 32; w++) total += shared[w];
            __syncthreads();
            return total;
        }

        template <int VPT, bool BF> __device__ __forceinline__ void norm(const u16* __restrict__ x, const u16* __restrict__ w,
            const u16* __restrict__ b, u16* __restrict__ y, int n, float eps) {
            __shared__ float shared[THREADS / 32];
            const long long row = blockIdx.x;
            const u16* xr = x + row * n;
            u16* yr = y + row * n;
            float v[VPT][8];
            float s = 0.0f;
            _Pragma("unroll") for (int i = 0; i < VPT; i++) {
                const int at = (threadIdx.x + i * THREADS) * 8;
                if (at < n) {
                    const V8 raw = *reinterpret_cast<const V8*>(xr + at);
                    _Pragma("unroll") for (int j = 0; j < 4; j++) { v[i][2 * j] = lo<BF>(raw.a[j]); v[i][2 * j + 1] = hi<BF>(raw.a[j]); }
                    _Pragma("unroll") for (int j = 0; j < 8; j++) s += v[i][j];
                } else {
                    _Pragma("unroll") for (int j = 0; j < 8; j++) v[i][j] = 0.0f;
                }
            }
            const float mean = block_sum(s, shared) / (float)n;
            float q = 0.0f;
            _Pragma("unroll") for (int i = 0; i < VPT; i++) {
                const int at = (threadIdx.x + i * THREADS) * 8;
                if (at < n) { _Pragma("unroll") for (int j = 0; j < 8; j++) { const float d = v[i][j] - mean; q += d * d; } }
            }
            const float rstd = rsqrt_approx(block_sum(q, shared) / (float)n + eps);
            _Pragma("unroll") for (int i = 0; i < VPT; i++) {
                const int at = (threadIdx.x + i * THREADS) * 8;
                if (at < n) {
                    const V8 wr = *reinterpret_cast<const V8*>(w + at);
                    const V8 br = *reinterpret_cast<const V8*>(b + at);
                    V8 out;
                    _Pragma("unroll") for (int j = 0; j < 4; j++) {
                        const float a0 = (v[i][2 * j] - mean) * rstd * lo<BF>(wr.a[j]) + lo<BF>(br.a[j]);
                        const float a1 = (v[i][2 * j + 1] - mean) * rstd * hi<BF>(wr.a[j]) + hi<BF>(br.a[j]);
                        out.a[j] = pack<BF>(a0, a1);
                    }
                    *reinterpret_cast<V8*>(yr + at) = out;
                }
            }
        }

        #define NORM(VPT) \
        extern "C" __global__ void __launch_bounds__(THREADS) layer_norm_half_##VPT(const u16* x, const u16* w, const u16* b, u16* y, int n, float eps) { norm<VPT, false>(x, w, b, y, n, eps); } \
        extern "C" __global__ void __launch_bounds__(THREADS) layer_norm_bf16_##VPT(const u16* x, const u16* w, const u16* b, u16* y, int n, float eps) { norm<VPT, true>(x, w, b, y, n, eps); }
        NORM(1)
        NORM(2)
        NORM(4)
        NORM(8)
        """;

    private sealed class Kernels
    {
        public readonly IntPtr[] Half = new IntPtr[4], BFloat16 = new IntPtr[4];

        public static Kernels? TryLoad()
        {
            if (Environment.GetEnvironmentVariable("ACTORINFER_LAYER_NORM") == "operations")
            {
                Console.Error.WriteLine("layer norm: libtorch's kernel (ACTORINFER_LAYER_NORM=operations)");
                return null;
            }
            try
            {
                var module = InvariantAttentionCuda.Driver.LoadModule(Source(), "layer_norm.cu", exact: false);
                var kernels = new Kernels();
                int[] vectors = [1, 2, 4, 8];
                for (var i = 0; i < vectors.Length; i++)
                {
                    kernels.Half[i] = InvariantAttentionCuda.Driver.Function(module, $"layer_norm_half_{vectors[i]}");
                    kernels.BFloat16[i] = InvariantAttentionCuda.Driver.Function(module, $"layer_norm_bf16_{vectors[i]}");
                }
                return kernels;
            }
            catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException or InvalidOperationException or TypeInitializationException
                or System.Runtime.InteropServices.ExternalException)
            {
                Console.Error.WriteLine($"layer norm: libtorch's kernel, not ours ({ex.Message})");
                return null;
            }
        }
    }
}
