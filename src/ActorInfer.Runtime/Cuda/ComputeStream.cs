using System.Runtime.InteropServices;

namespace ActorInfer.Runtime.Cuda;

/// <summary>
/// A model's own CUDA stream for libtorch's kernels, on a node of several models sharing one device. Without it every
/// model's kernels queue on the legacy default stream in the order their threads issue them, so one model's wait for its
/// next layer's weights (tens of milliseconds of PCIe for an offloaded model) holds up every kernel the other issues after
/// it. The stream is made at the device's greatest priority for a model above the others (its kernels are scheduled first
/// where both have work), at the least otherwise; it orders with the legacy default stream, where the node loaded the
/// weights, and lives as long as the process (libtorch's allocator keeps blocks by stream). <see cref="Enter"/> makes it libtorch's current stream on the calling thread (the model's tensor thread) and
/// the thread's <see cref="CudaRuntime.ComputeStream"/>, against which the model's copies and events order. libtorch's C
/// shim reads the current stream back (<c>aoti_torch_get_current_cuda_stream</c>) to check that it took; where a call
/// is missing or it did not take, the thread stays on the legacy stream and one line says why.
/// </summary>
public sealed class ComputeStream
{
    private readonly bool _high;
    private readonly Lock _gate = new();
    private IntPtr _stream;
    private volatile bool _refused;

    /// <param name="high">At the device's greatest priority (a model above the others), or its least.</param>
    public ComputeStream(bool high) => _high = high;

    /// <summary>
    /// Makes the stream current for libtorch and for this process's compute events on the calling thread (once per
    /// thread: later calls on it return at once). False where the thread stays on the legacy default stream.
    /// </summary>
    public bool Enter()
    {
        if (_stream != IntPtr.Zero && CudaRuntime.ComputeStream == _stream) return true;
        if (_refused) return false;
        lock (_gate)
        {
            if (_refused) return false;
            try
            {
                if (_stream == IntPtr.Zero) _stream = CudaRuntime.CreatePriorityStream(_high);
                var device = CudaRuntime.CurrentDevice();
                MakeCurrent(_stream, device);
                var current = Current(device);
                if (current != _stream)
                    throw new InvalidOperationException($"libtorch's current stream is 0x{current:x} after setting 0x{_stream:x}");
                CudaRuntime.ComputeStream = _stream;
                return true;
            }
            catch (Exception ex) when (ex is EntryPointNotFoundException or DllNotFoundException or ExternalException or InvalidOperationException)
            {
                _refused = true;
                Console.Error.WriteLine($"compute stream: libtorch's kernels stay on the legacy default stream ({ex.Message})");
                return false;
            }
        }
    }

    /// <summary>
    /// libtorch's current stream on this thread: by the C shim where the library exports its setter, else by c10's C++
    /// functions (the C shim of libtorch 2.11 exports the getter only).
    /// </summary>
    internal static void MakeCurrent(IntPtr stream, int device)
    {
        try
        {
            Check(SetCurrent(stream, device), "aoti_torch_set_current_cuda_stream");
            return;
        }
        catch (EntryPointNotFoundException)
        {
        }
        SetCurrentCudaStream(StreamFromExternal(stream, checked((sbyte)device)));
    }

    /// <summary>libtorch's current stream on this thread (0: the legacy default stream).</summary>
    internal static IntPtr Current(int device)
    {
        Check(GetCurrent(device, out var current), "aoti_torch_get_current_cuda_stream");
        return current;
    }

    private static void Check(int error, string call)
    {
        if (error != 0) throw new InvalidOperationException($"{call} returned {error}");
    }

    // libtorch's C shim for ahead-of-time compiled models (extern "C", exported by libtorch_cuda): an AOTITorchError, 0 on success.
    [DllImport("torch_cuda", EntryPoint = "aoti_torch_set_current_cuda_stream")]
    private static extern int SetCurrent(IntPtr stream, int deviceIndex);

    [DllImport("torch_cuda", EntryPoint = "aoti_torch_get_current_cuda_stream")]
    private static extern int GetCurrent(int deviceIndex, out IntPtr stream);

    // c10::cuda::CUDAStream by value: a c10::Stream (device type and index, one byte each, then the 64-bit stream id),
    // trivially copyable, so passed and returned in two registers.
    [StructLayout(LayoutKind.Sequential)]
    private struct C10CudaStream
    {
        public sbyte DeviceType;
        public sbyte DeviceIndex;
        public long Id;
    }

    // c10::cuda::getStreamFromExternal(cudaStream_t, DeviceIndex) and c10::cuda::setCurrentCUDAStream(CUDAStream), by their
    // Itanium-mangled names in libc10_cuda.
    [DllImport("c10_cuda", EntryPoint = "_ZN3c104cuda21getStreamFromExternalEP11CUstream_sta")]
    private static extern C10CudaStream StreamFromExternal(IntPtr stream, sbyte deviceIndex);

    [DllImport("c10_cuda", EntryPoint = "_ZN3c104cuda20setCurrentCUDAStreamENS0_10CUDAStreamE")]
    private static extern void SetCurrentCudaStream(C10CudaStream stream);
}
