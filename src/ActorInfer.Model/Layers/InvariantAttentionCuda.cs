using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using static TorchSharp.torch;

namespace ActorInfer.Model.Layers;

/// <summary>
/// <see cref="InvariantAttention"/> on CUDA: one kernel, compiled at first use by NVRTC (no CUDA headers: half and
/// bfloat16 conversions by PTX), loaded through the driver API into libtorch's context and launched on libtorch's current
/// stream. One block of 128 threads (4 warps) per (sequence, head): warp w scores keys w, w + 4, ..., thread t sums the
/// weights of keys t, t + 128, ..., warp g forms the context of keys g, g + 4, ...; the orders are the CPU's.
/// </summary>
internal static unsafe class InvariantAttentionCuda
{
    private static readonly Lazy<Kernels> Loaded = new(Kernels.Load, LazyThreadSafetyMode.ExecutionAndPublication);

    public static Tensor Decode(Tensor q, Tensor keys, Tensor values, Tensor starts)
    {
        var dtype = q.dtype;
        if (keys.dtype != dtype || values.dtype != dtype) throw new ArgumentException("queries, keys and values must share a type", nameof(keys));
        if (keys.stride(3) != 1 || values.stride(3) != 1 || q.stride(3) != 1) throw new ArgumentException("queries, keys and values need contiguous heads", nameof(keys));
        if (starts.dtype != ScalarType.Int32 || starts.device_type != TorchSharp.DeviceType.CUDA || starts.numel() != q.size(0))
            throw new ArgumentException("the starts must be one int32 per sequence on the device", nameof(starts));
        var kernels = Loaded.Value;
        var function = dtype switch
        {
            ScalarType.Float16 => kernels.Half,
            ScalarType.BFloat16 => kernels.BFloat16,
            ScalarType.Float32 => kernels.Float,
            _ => throw new ArgumentException($"batch-invariant attention takes float16, bfloat16 or float32 (got {dtype})", nameof(q)),
        };
        long b = q.size(0), h = q.size(1), d = q.size(3), length = keys.size(2), kvHeads = keys.size(1);
        var output = empty([b, 1, h * d], dtype, q.device);
        using var scratch = empty([b * h, length], ScalarType.Float32, q.device);
        IntPtr qp = TensorData.Pointer(q), kp = TensorData.Pointer(keys), vp = TensorData.Pointer(values), sp = TensorData.Pointer(starts),
            op = TensorData.Pointer(output), scp = TensorData.Pointer(scratch);
        long qsb = q.stride(0), qsh = q.stride(1), ksb = keys.stride(0), ksh = keys.stride(1), ksl = keys.stride(2),
            vsb = values.stride(0), vsh = values.stride(1), vsl = values.stride(2);
        int heads = (int)h, kv = (int)kvHeads, len = (int)length, dim = (int)d;
        var scale = 1f / MathF.Sqrt(d);
        var args = stackalloc void*[]
        {
            &qp, &qsb, &qsh, &kp, &ksb, &ksh, &ksl, &vp, &vsb, &vsh, &vsl, &sp, &op, &scp, &heads, &kv, &len, &dim, &scale,
        };
        var stream = Driver.CurrentStream(q.device_index);
        Driver.Check(Driver.LaunchKernel(function, (uint)(b * h), 1, 1, 128, 1, 1, 0, stream, args, null), "cuLaunchKernel");
        return output;
    }

    /// <summary>The kernel's CUDA C, its constants written from <see cref="InvariantAttention"/>'s bits.</summary>
    internal static string Source()
    {
        static string F(int bits) => string.Create(CultureInfo.InvariantCulture, $"__int_as_float(0x{bits:X8})");
        var poly = new StringBuilder();
        poly.Append("    float p = ").Append(F(InvariantAttention.PolynomialBits[0])).Append(";\n");
        for (var i = 1; i < InvariantAttention.PolynomialBits.Length; i++)
            poly.Append("    p = fmaf(p, r, ").Append(F(InvariantAttention.PolynomialBits[i])).Append(");\n");
        var floor = F(BitConverter.SingleToInt32Bits(InvariantAttention.ExpFloor));
        return $$"""
            #define MAXD {{InvariantAttention.MaxHeadDim}}
            typedef unsigned short u16;
            __device__ __forceinline__ float load_half(const u16* p) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(*p)); return f; }
            __device__ __forceinline__ void store_half(u16* p, float f) { u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); *p = h; }
            __device__ __forceinline__ float load_bf16(const u16* p) { return __int_as_float(((unsigned int)*p) << 16); }
            __device__ __forceinline__ void store_bf16(u16* p, float f) { u16 h; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f)); *p = h; }
            __device__ __forceinline__ float load_float(const float* p) { return *p; }
            __device__ __forceinline__ void store_float(float* p, float f) { *p = f; }

            __device__ __forceinline__ float invariant_exp(float x) {
                if (!(x >= {{floor}})) return 0.0f;
                float n = rintf(x * {{F(InvariantAttention.Log2EBits)}});
                float r = fmaf(n, {{F(InvariantAttention.MinusLn2HiBits)}}, x);
                r = fmaf(n, {{F(InvariantAttention.Ln2LoBits)}}, r);
            {{poly}}    int e = (int)n;
                if (e >= -126) return p * __int_as_float((e + 127) << 23);
                return (p * __int_as_float((e + 64 + 127) << 23)) * __int_as_float((-64 + 127) << 23);
            }

            #define KERNEL(NAME, T, LOAD, STORE) \
            extern "C" __global__ void __launch_bounds__(128) NAME( \
                const T* q, long long qsb, long long qsh, \
                const T* k, long long ksb, long long ksh, long long ksl, \
                const T* v, long long vsb, long long vsh, long long vsl, \
                const int* starts, T* out, float* scratch, int heads, int kvHeads, int length, int dim, float scale) { \
                __shared__ float qs[MAXD]; \
                __shared__ float red[128]; \
                __shared__ float part[4][MAXD]; \
                const int bh = blockIdx.x, b = bh / heads, h = bh % heads, kvh = h / (heads / kvHeads); \
                const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5; \
                const int start = starts[b], n = length - start; \
                for (int i = tid; i < dim; i += 128) qs[i] = LOAD(q + b * qsb + h * qsh + i); \
                __syncthreads(); \
                float* sc = scratch + (long long)bh * length; \
                const T* kb = k + b * ksb + kvh * ksh + (long long)start * ksl; \
                for (int r0 = warp; r0 < n; r0 += 16) { \
                    float p[4]; \
                    _Pragma("unroll") for (int u = 0; u < 4; u++) { \
                        p[u] = 0.0f; \
                        const int r = r0 + 4 * u; \
                        if (r < n) { const T* kr = kb + (long long)r * ksl; for (int i = lane; i < dim; i += 32) p[u] = fmaf(qs[i], LOAD(kr + i), p[u]); } \
                    } \
                    _Pragma("unroll") for (int o = 16; o > 0; o >>= 1) { \
                        _Pragma("unroll") for (int u = 0; u < 4; u++) p[u] = p[u] + __shfl_xor_sync(0xffffffffu, p[u], o); \
                    } \
                    if (lane == 0) { _Pragma("unroll") for (int u = 0; u < 4; u++) if (r0 + 4 * u < n) sc[r0 + 4 * u] = p[u] * scale; } \
                } \
                __syncthreads(); \
                float m = __int_as_float(0xff800000); \
                for (int r = tid; r < n; r += 128) m = fmaxf(m, sc[r]); \
                red[tid] = m; \
                __syncthreads(); \
                for (int s = 64; s > 0; s >>= 1) { if (tid < s) red[tid] = fmaxf(red[tid], red[tid + s]); __syncthreads(); } \
                m = red[0]; \
                __syncthreads(); \
                float acc = 0.0f; \
                for (int r = tid; r < n; r += 128) { const float e = invariant_exp(sc[r] - m); sc[r] = e; acc = acc + e; } \
                red[tid] = acc; \
                __syncthreads(); \
                for (int s = 64; s > 0; s >>= 1) { if (tid < s) red[tid] = red[tid] + red[tid + s]; __syncthreads(); } \
                const float total = red[0]; \
                float a[MAXD / 32]; \
                _Pragma("unroll") for (int i = 0; i < MAXD / 32; i++) a[i] = 0.0f; \
                const T* vb = v + b * vsb + kvh * vsh + (long long)start * vsl; \
                _Pragma("unroll 4") for (int r = warp; r < n; r += 4) { \
                    const float e = sc[r]; \
                    const T* vr = vb + (long long)r * vsl; \
                    _Pragma("unroll") for (int i = 0; i < MAXD / 32; i++) { const int d = lane + 32 * i; if (d < dim) a[i] = fmaf(e, LOAD(vr + d), a[i]); } \
                } \
                _Pragma("unroll") for (int i = 0; i < MAXD / 32; i++) { const int d = lane + 32 * i; if (d < dim) part[warp][d] = a[i]; } \
                __syncthreads(); \
                for (int d = tid; d < dim; d += 128) STORE(out + (long long)bh * dim + d, ((part[0][d] + part[1][d]) + (part[2][d] + part[3][d])) / total); \
            }

            KERNEL(invariant_decode_half, u16, load_half, store_half)
            KERNEL(invariant_decode_bf16, u16, load_bf16, store_bf16)
            KERNEL(invariant_decode_float, float, load_float, store_float)
            """;
    }

    private sealed class Kernels
    {
        public IntPtr Half, BFloat16, Float;

        public static Kernels Load()
        {
            var module = Driver.LoadModule(Source(), "invariant_attention.cu");
            return new Kernels
            {
                Half = Driver.Function(module, "invariant_decode_half"),
                BFloat16 = Driver.Function(module, "invariant_decode_bf16"),
                Float = Driver.Function(module, "invariant_decode_float"),
            };
        }
    }

    /// <summary>The CUDA driver's few calls this needs, and libtorch's current stream.</summary>
    internal static class Driver
    {
        private static readonly IntPtr Library = LoadFirst("libcuda.so.1", "libcuda.so");

        public static readonly delegate* unmanaged<uint, int> Init = (delegate* unmanaged<uint, int>)Export("cuInit");
        private static readonly delegate* unmanaged<IntPtr*, int> ctxGetCurrent = (delegate* unmanaged<IntPtr*, int>)Export("cuCtxGetCurrent");
        private static readonly delegate* unmanaged<int*, int> ctxGetDevice = (delegate* unmanaged<int*, int>)Export("cuCtxGetDevice");
        private static readonly delegate* unmanaged<int*, int, int, int> deviceGetAttribute = (delegate* unmanaged<int*, int, int, int>)Export("cuDeviceGetAttribute");
        private static readonly delegate* unmanaged<IntPtr*, byte*, int> moduleLoadData = (delegate* unmanaged<IntPtr*, byte*, int>)Export("cuModuleLoadData");
        private static readonly delegate* unmanaged<IntPtr*, IntPtr, byte*, int> moduleGetFunction = (delegate* unmanaged<IntPtr*, IntPtr, byte*, int>)Export("cuModuleGetFunction");
        public static readonly delegate* unmanaged<IntPtr, uint, uint, uint, uint, uint, uint, uint, IntPtr, void**, void**, int> LaunchKernel =
            (delegate* unmanaged<IntPtr, uint, uint, uint, uint, uint, uint, uint, IntPtr, void**, void**, int>)Export("cuLaunchKernel");
        private static readonly delegate* unmanaged<int, IntPtr*, int> getErrorString = (delegate* unmanaged<int, IntPtr*, int>)Export("cuGetErrorString");

        public static int CtxGetCurrent(out IntPtr context) { IntPtr c; var e = ctxGetCurrent(&c); context = c; return e; }
        public static int CtxGetDevice(out int device) { int d; var e = ctxGetDevice(&d); device = d; return e; }
        public static int DeviceGetAttribute(out int value, int attribute, int device) { int v; var e = deviceGetAttribute(&v, attribute, device); value = v; return e; }
        public static int ModuleLoadData(out IntPtr module, byte* image) { IntPtr m; var e = moduleLoadData(&m, image); module = m; return e; }

        /// <summary>
        /// CUDA C compiled by NVRTC for the current context's device and loaded into that context, libtorch's. Exact (the
        /// default): no contraction of products and sums (<c>--fmad=false</c>), for kernels whose bits are written down.
        /// </summary>
        public static IntPtr LoadModule(string source, string name, bool exact = true)
        {
            Check(Init(0), "cuInit");
            Check(CtxGetCurrent(out var context), "cuCtxGetCurrent");
            if (context == IntPtr.Zero) throw new InvalidOperationException("no CUDA context is current on the tensor thread");
            Check(CtxGetDevice(out var device), "cuCtxGetDevice");
            Check(DeviceGetAttribute(out var major, 75, device), "cuDeviceGetAttribute");
            Check(DeviceGetAttribute(out var minor, 76, device), "cuDeviceGetAttribute");
            var ptx = Nvrtc.Compile(source, name, exact
                ? [$"--gpu-architecture=compute_{major}{minor}", "--fmad=false"]
                : [$"--gpu-architecture=compute_{major}{minor}", "--std=c++17"]);
            IntPtr module;
            fixed (byte* image = ptx) Check(ModuleLoadData(out module, image), "cuModuleLoadData");
            return module;
        }

        public static IntPtr Function(IntPtr module, string name)
        {
            var bytes = Encoding.ASCII.GetBytes(name + "\0");
            IntPtr f;
            fixed (byte* n = bytes) Check(moduleGetFunction(&f, module, n), "cuModuleGetFunction");
            return f;
        }

        public static void Check(int status, string call)
        {
            if (status == 0) return;
            IntPtr text;
            var message = getErrorString(status, &text) == 0 ? Marshal.PtrToStringAnsi(text) : null;
            throw new ExternalException($"CUDA {call} failed: {message ?? "unknown error"} ({status})", status);
        }

        // libtorch's C shim (libtorch_cuda): the calling thread's current stream for a device.
        [DllImport("torch_cuda", EntryPoint = "aoti_torch_get_current_cuda_stream")]
        private static extern int GetCurrentStream(int deviceIndex, out IntPtr stream);

        public static IntPtr CurrentStream(int device)
        {
            var error = GetCurrentStream(device, out var stream);
            if (error != 0) throw new InvalidOperationException($"aoti_torch_get_current_cuda_stream returned {error}");
            return stream;
        }

        private static IntPtr Export(string name) => NativeLibrary.GetExport(Library, name);

        internal static IntPtr LoadFirst(params string[] names)
        {
            foreach (var name in names)
                if (NativeLibrary.TryLoad(name, out var handle)) return handle;
            throw new DllNotFoundException($"none of {string.Join(", ", names)} is on the library path");
        }
    }

    /// <summary>NVRTC: CUDA C to PTX at run time.</summary>
    internal static class Nvrtc
    {
        private static readonly IntPtr Library = Driver.LoadFirst("libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so");
        private static readonly delegate* unmanaged<IntPtr*, byte*, byte*, int, byte**, byte**, int> createProgram =
            (delegate* unmanaged<IntPtr*, byte*, byte*, int, byte**, byte**, int>)NativeLibrary.GetExport(Library, "nvrtcCreateProgram");
        private static readonly delegate* unmanaged<IntPtr, int, byte**, int> compileProgram =
            (delegate* unmanaged<IntPtr, int, byte**, int>)NativeLibrary.GetExport(Library, "nvrtcCompileProgram");
        private static readonly delegate* unmanaged<IntPtr, nuint*, int> getLogSize = (delegate* unmanaged<IntPtr, nuint*, int>)NativeLibrary.GetExport(Library, "nvrtcGetProgramLogSize");
        private static readonly delegate* unmanaged<IntPtr, byte*, int> getLog = (delegate* unmanaged<IntPtr, byte*, int>)NativeLibrary.GetExport(Library, "nvrtcGetProgramLog");
        private static readonly delegate* unmanaged<IntPtr, nuint*, int> getPtxSize = (delegate* unmanaged<IntPtr, nuint*, int>)NativeLibrary.GetExport(Library, "nvrtcGetPTXSize");
        private static readonly delegate* unmanaged<IntPtr, byte*, int> getPtx = (delegate* unmanaged<IntPtr, byte*, int>)NativeLibrary.GetExport(Library, "nvrtcGetPTX");
        private static readonly delegate* unmanaged<IntPtr*, int> destroyProgram = (delegate* unmanaged<IntPtr*, int>)NativeLibrary.GetExport(Library, "nvrtcDestroyProgram");

        public static byte[] Compile(string source, string name, string[] options)
        {
            var src = Encoding.UTF8.GetBytes(source + "\0");
            var nm = Encoding.ASCII.GetBytes(name + "\0");
            IntPtr program;
            fixed (byte* s = src)
            fixed (byte* n = nm)
                Check(createProgram(&program, s, n, 0, null, null), "nvrtcCreateProgram");
            try
            {
                var encoded = options.Select(o => Encoding.ASCII.GetBytes(o + "\0")).ToArray();
                var handles = encoded.Select(e => GCHandle.Alloc(e, GCHandleType.Pinned)).ToArray();
                try
                {
                    var pointers = stackalloc byte*[encoded.Length];
                    for (var i = 0; i < encoded.Length; i++) pointers[i] = (byte*)handles[i].AddrOfPinnedObject();
                    var status = compileProgram(program, encoded.Length, pointers);
                    if (status != 0) throw new InvalidOperationException($"NVRTC could not compile {name} ({status}): {Log(program)}");
                }
                finally
                {
                    foreach (var h in handles) h.Free();
                }
                nuint size;
                Check(getPtxSize(program, &size), "nvrtcGetPTXSize");
                var ptx = new byte[(int)size];
                fixed (byte* p = ptx) Check(getPtx(program, p), "nvrtcGetPTX");
                return ptx;
            }
            finally
            {
                destroyProgram(&program);
            }
        }

        private static string Log(IntPtr program)
        {
            nuint size;
            if (getLogSize(program, &size) != 0 || size == 0) return "";
            var log = new byte[(int)size];
            fixed (byte* l = log) getLog(program, l);
            return Encoding.UTF8.GetString(log).TrimEnd('\0');
        }

        private static void Check(int status, string call)
        {
            if (status != 0) throw new InvalidOperationException($"{call} failed ({status})");
        }
    }
}
