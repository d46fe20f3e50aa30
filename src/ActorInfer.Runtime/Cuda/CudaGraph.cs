using System.Runtime.InteropServices;

namespace ActorInfer.Runtime.Cuda;

/// <summary>
/// libtorch's <c>at::cuda::CUDAGraph</c>, reached by its C++ symbols (TorchSharp does not expose it): the kernels one
/// piece of work launches, recorded once and launched again as one graph. libtorch's caching allocator gives the tensors
/// made during the capture from the graph's private pool, so that a replay finds its intermediates where the capture left
/// them; graphs given the same <see cref="Pool"/> share it, which is safe for graphs replayed one at a time on one stream.
/// A replay runs on libtorch's current stream, reads and writes the addresses the capture saw: its inputs are refilled in
/// place before it, its outputs read after it.
/// <para>
/// A C++ exception cannot cross into .NET on Linux (the process ends), so the checks libtorch would throw for are made
/// here first: the capture runs on a stream of its own (never the legacy default stream), and a capture whose work
/// failed is ended through the CUDA runtime and its object leaked rather than ended through libtorch.
/// </para>
/// </summary>
internal sealed unsafe class CudaGraph : IDisposable
{
    /// <summary>A private memory pool's id (libtorch's <c>MempoolId_t</c>); (0, 0) asks for a new pool.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public readonly record struct PoolId(ulong First, ulong Second)
    {
        public bool IsNone => First == 0 && Second == 0;
    }

    // Room for the C++ object: sizeof(at::cuda::CUDAGraph) is a few hundred bytes in libtorch 2.x (handles, flags, ids, a
    // small map of generator states); the constructor is given a zeroed block well above that.
    private const int ObjectBytes = 4096;
    private const int CaptureModeThreadLocal = 1;

    private IntPtr _self;

    private CudaGraph(IntPtr self) => _self = self;

    /// <summary>The graph's private pool, for the next capture to share.</summary>
    public PoolId Pool => GetPool(_self);

    /// <summary>
    /// Records <paramref name="work"/> on <paramref name="captureStream"/> (a non-blocking stream of the caller's, made
    /// libtorch's current stream for the capture and the previous one made current again after) into a graph ready to
    /// replay. Nothing runs on the device during a capture: the caller replays it for the work to happen. When the work
    /// throws, the capture is abandoned (see the class notes) and the exception passes on.
    /// </summary>
    public static CudaGraph Capture(Action work, IntPtr captureStream, PoolId pool)
    {
        if (captureStream == IntPtr.Zero) throw new ArgumentException("a CUDA graph is captured on a stream of its own, not the legacy default stream", nameof(captureStream));
        var device = CudaRuntime.CurrentDevice();
        var previous = ComputeStream.Current(device);
        var self = (IntPtr)NativeMemory.AlignedAlloc(ObjectBytes, 64);
        NativeMemory.Clear((void*)self, ObjectBytes);
        Construct(self, false);
        ComputeStream.MakeCurrent(captureStream, device);
        try
        {
            CaptureBegin(self, pool, CaptureModeThreadLocal);
            try
            {
                work();
            }
            catch
            {
                // libtorch's capture_end would throw for an invalidated capture: end it through the runtime instead. The
                // object stays allocated (its destructor would reset a capture libtorch still counts as open).
                CudaRuntime.AbandonCapture(captureStream);
                self = IntPtr.Zero;
                throw;
            }
            CaptureEnd(self);
        }
        finally
        {
            ComputeStream.MakeCurrent(previous, device);
        }
        return new CudaGraph(self);
    }

    /// <summary>Launches the graph on libtorch's current stream.</summary>
    public void Replay()
    {
        ObjectDisposedException.ThrowIf(_self == IntPtr.Zero, this);
        ReplayNative(_self);
    }

    public void Dispose()
    {
        if (_self == IntPtr.Zero) return;
        Destruct(_self);
        NativeMemory.AlignedFree((void*)_self);
        _self = IntPtr.Zero;
    }

    // at::cuda::CUDAGraph's members by their Itanium-mangled names in libtorch_cuda; `this` is the first argument, the
    // MempoolId_t (a pair of two 64-bit integers, trivially copyable) travels in two registers either way.
    [DllImport("torch_cuda", EntryPoint = "_ZN2at4cuda9CUDAGraphC1Eb")]
    private static extern void Construct(IntPtr self, [MarshalAs(UnmanagedType.U1)] bool keepGraph);

    [DllImport("torch_cuda", EntryPoint = "_ZN2at4cuda9CUDAGraphD1Ev")]
    private static extern void Destruct(IntPtr self);

    [DllImport("torch_cuda", EntryPoint = "_ZN2at4cuda9CUDAGraph13capture_beginESt4pairIyyE21cudaStreamCaptureMode")]
    private static extern void CaptureBegin(IntPtr self, PoolId pool, int captureMode);

    [DllImport("torch_cuda", EntryPoint = "_ZN2at4cuda9CUDAGraph11capture_endEv")]
    private static extern void CaptureEnd(IntPtr self);

    [DllImport("torch_cuda", EntryPoint = "_ZN2at4cuda9CUDAGraph6replayEv")]
    private static extern void ReplayNative(IntPtr self);

    [DllImport("torch_cuda", EntryPoint = "_ZN2at4cuda9CUDAGraph4poolEv")]
    private static extern PoolId GetPool(IntPtr self);
}
