namespace ActorInfer.Model.Layers;

/// <summary>
/// CUDA C shared by our kernels' sources (NVRTC, no headers): the 16-bit types, a 16-byte vector of eight of them, and each
/// half of a 32-bit word widened to single precision, float16 by PTX and bfloat16 by a shift.
/// </summary>
internal static class CudaSource
{
    public const string HalfWidening = """
        typedef unsigned short u16;
        typedef unsigned int u32;
        struct alignas(16) V8 { u32 a[4]; };

        template <bool BF> __device__ __forceinline__ float lo(u32 x);
        template <> __device__ __forceinline__ float lo<false>(u32 x) { float f; u16 h = (u16)(x & 0xffffu); asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
        template <> __device__ __forceinline__ float lo<true>(u32 x) { return __int_as_float(x << 16); }
        template <bool BF> __device__ __forceinline__ float hi(u32 x);
        template <> __device__ __forceinline__ float hi<false>(u32 x) { float f; u16 h = (u16)(x >> 16); asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
        template <> __device__ __forceinline__ float hi<true>(u32 x) { return __int_as_float(x & 0xffff0000u); }
        """;
}
