using static TorchSharp.torch;

namespace ActorInfer.Model.Layers;

/// <summary>
/// <see cref="CacheCompression.DecompressInto"/> on CUDA in one kernel (compiled at first use by NVRTC, launched on libtorch's
/// current stream): a thread per code byte writes its two values, each as libtorch's operations form it, the code times its
/// group's step rounded to the dtype, plus the minimum, rounded. libtorch's four operations (two widening copies, a product
/// and a sum, each a pass over the expanded cache through its strides) took most of a decoding step's compute over a
/// compressed cache on an H100 (OPT-30B, 64 x 6). Where the kernel cannot be loaded, the operations are used, and one line
/// says why.
/// </summary>
internal static unsafe class CacheCompressionCuda
{
    private const int Threads = 256;
    private static readonly Lazy<Kernels?> Loaded = new(Kernels.TryLoad, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>False where the kernel is not used (not loaded, or inputs it does not take): the caller uses the operations.</summary>
    /// <param name="codes">[T, B, hidden / 2] bytes, contiguous.</param>
    /// <param name="ranges">[T, B, groups, 2] of the destination's dtype, contiguous.</param>
    /// <param name="destination">[B, heads, T, head_dim], contiguous heads.</param>
    public static bool TryDecompressInto(Tensor codes, Tensor ranges, Tensor destination, int groupSize)
    {
        if (destination.dim() != 4 || destination.stride(3) != 1 || codes.dim() != 3) return false;
        return Launch(codes, ranges, destination, codes.size(0), codes.size(1), codes.size(2), groupSize, checked((int)destination.size(3)),
            destination.stride(0), destination.stride(1), destination.stride(2));
    }

    /// <summary>
    /// <see cref="WeightCompression.DecompressInto"/>'s layout: codes [elements / 2] and ranges [groups, 2] into a contiguous
    /// destination, as one row.
    /// </summary>
    public static bool TryDecompressWeight(Tensor codes, Tensor ranges, Tensor destination, int groupSize)
    {
        if (!destination.is_contiguous() || destination.numel() > int.MaxValue) return false;
        var elements = destination.numel();
        return Launch(codes, ranges, destination, 1, 1, elements / 2, groupSize, checked((int)elements), 0, 0, 0);
    }

    private static bool Launch(Tensor codes, Tensor ranges, Tensor destination, long tokens, long batch, long rowBytes, int groupSize, int headDim,
        long dsb, long dsh, long dst)
    {
        var dtype = destination.dtype;
        if (codes.dtype != ScalarType.Byte || ranges.dtype != dtype || !codes.is_contiguous() || !ranges.is_contiguous()
            || codes.device_type != TorchSharp.DeviceType.CUDA || ranges.device_type != TorchSharp.DeviceType.CUDA
            || destination.device_type != TorchSharp.DeviceType.CUDA || rowBytes > int.MaxValue || groupSize % 2 != 0)
            return false;
        if (Loaded.Value is not { } kernels) return false;
        var function = dtype switch
        {
            ScalarType.Float16 => kernels.Half,
            ScalarType.BFloat16 => kernels.BFloat16,
            ScalarType.Float32 => kernels.Float,
            _ => IntPtr.Zero,
        };
        if (function == IntPtr.Zero) return false;
        var n = tokens * batch * rowBytes;
        if (n == 0) return true;
        IntPtr cp = TensorData.Pointer(codes), rp = TensorData.Pointer(ranges), op = TensorData.Pointer(destination);
        int b = checked((int)batch), row = (int)rowBytes, half = groupSize / 2;
        var args = stackalloc void*[] { &cp, &rp, &op, &n, &b, &row, &half, &headDim, &dsb, &dsh, &dst };
        var stream = InvariantAttentionCuda.Driver.CurrentStream(destination.device_index);
        var blocks = checked((uint)((n + Threads - 1) / Threads));
        InvariantAttentionCuda.Driver.Check(InvariantAttentionCuda.Driver.LaunchKernel(function, blocks, 1, 1, Threads, 1, 1, 0, stream, args, null),
            "cuLaunchKernel");
        return true;
    }

    /// <summary>The kernel's CUDA C (no headers: half and bfloat16 conversions by PTX).</summary>
    internal static string Source() => """
        typedef unsigned short u16;
        __device__ __forceinline__ float load_half(const u16* p) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(*p)); return f; }
        __device__ __forceinline__ u16 to_half(float f) { u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
        __device__ __forceinline__ float round_half(float f) { float r; u16 h = to_half(f); asm("cvt.f32.f16 %0, %1;" : "=f"(r) : "h"(h)); return r; }
        __device__ __forceinline__ void store_half(u16* p, float f) { *p = to_half(f); }
        __device__ __forceinline__ float load_bf16(const u16* p) { return __int_as_float(((unsigned int)*p) << 16); }
        __device__ __forceinline__ u16 to_bf16(float f) { u16 h; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
        __device__ __forceinline__ float round_bf16(float f) { return __int_as_float(((unsigned int)to_bf16(f)) << 16); }
        __device__ __forceinline__ void store_bf16(u16* p, float f) { *p = to_bf16(f); }
        __device__ __forceinline__ float load_float(const float* p) { return *p; }
        __device__ __forceinline__ float round_float(float f) { return f; }
        __device__ __forceinline__ void store_float(float* p, float f) { *p = f; }

        #define EXPAND(NAME, T, LOAD, ROUND, STORE) \
        extern "C" __global__ void __launch_bounds__(256) NAME(const unsigned char* codes, const T* ranges, T* out, long long n, \
            int batch, int rowBytes, int half, int headDim, long long dsb, long long dsh, long long dst) { \
            const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; \
            if (i >= n) return; \
            const long long tb = i / rowBytes; \
            const int j = (int)(i - tb * rowBytes), b = (int)(tb % batch); \
            const long long t = tb / batch; \
            const int g = j / half, p = j - g * half; \
            const T* r = ranges + (tb * (rowBytes / half) + g) * 2; \
            const float minimum = LOAD(r), step = LOAD(r + 1); \
            const unsigned int c = codes[i]; \
            const int e0 = 2 * g * half + p, e1 = e0 + half; \
            T* base = out + b * dsb + t * dst; \
            STORE(base + (e0 / headDim) * dsh + (e0 % headDim), ROUND((float)(c & 15u) * step) + minimum); \
            STORE(base + (e1 / headDim) * dsh + (e1 % headDim), ROUND((float)(c >> 4) * step) + minimum); \
        }

        EXPAND(cache_expand_half, u16, load_half, round_half, store_half)
        EXPAND(cache_expand_bf16, u16, load_bf16, round_bf16, store_bf16)
        EXPAND(cache_expand_float, float, load_float, round_float, store_float)
        """;

    private sealed class Kernels
    {
        public IntPtr Half, BFloat16, Float;

        public static Kernels? TryLoad()
        {
            // For comparing the two on one machine: ACTORINFER_EXPAND=operations keeps libtorch's operations.
            if (Environment.GetEnvironmentVariable("ACTORINFER_EXPAND") == "operations")
            {
                Console.Error.WriteLine("compressed cache: expanded by libtorch's operations (ACTORINFER_EXPAND=operations)");
                return null;
            }
            try
            {
                var module = InvariantAttentionCuda.Driver.LoadModule(Source(), "cache_expand.cu");
                return new Kernels
                {
                    Half = InvariantAttentionCuda.Driver.Function(module, "cache_expand_half"),
                    BFloat16 = InvariantAttentionCuda.Driver.Function(module, "cache_expand_bf16"),
                    Float = InvariantAttentionCuda.Driver.Function(module, "cache_expand_float"),
                };
            }
            catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException or InvalidOperationException or TypeInitializationException
                or System.Runtime.InteropServices.ExternalException)
            {
                Console.Error.WriteLine($"compressed cache: expanded by libtorch's operations, not one kernel ({ex.Message})");
                return null;
            }
        }
    }
}
