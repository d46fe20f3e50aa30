using System.Reflection;
using System.Runtime.InteropServices;

namespace ActorInfer.Runtime.Cuda;

/// <summary>
/// The few CUDA runtime calls TorchSharp does not expose: streams, events, async copies and free memory.
/// libtorch's kernels run on the calling thread's compute stream (<see cref="ComputeStream"/>): the legacy default stream
/// (handle 0), or the model's own where a <see cref="Cuda.ComputeStream"/> was entered on the thread; copies on a
/// non-blocking stream overlap them.
/// </summary>
internal static partial class CudaRuntime
{
    [ThreadStatic] private static IntPtr _computeStream;

    /// <summary>
    /// The stream libtorch's kernels of the calling thread run on, as this process set it: the legacy default stream
    /// unless a <see cref="Cuda.ComputeStream"/> was entered on the thread. Compute events are recorded and waited here.
    /// </summary>
    public static IntPtr ComputeStream
    {
        get => _computeStream;
        internal set => _computeStream = value;
    }

    private const string Library = "actorinfer_cudart";
    public const uint StreamNonBlocking = 0x1;
    public const uint EventDisableTiming = 0x2;
    public const int MemcpyDefault = 4;

    static CudaRuntime()
    {
        NativeLibrary.SetDllImportResolver(typeof(CudaRuntime).Assembly, Resolve);
    }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        if (name != Library) return IntPtr.Zero;
        foreach (var candidate in new[] { "libcudart.so.13", "libcudart.so.12", "libcudart.so" })
            if (NativeLibrary.TryLoad(candidate, assembly, path, out var handle))
                return handle;
        throw new DllNotFoundException("the CUDA runtime (libcudart.so.13 or .12) is not on the library path");
    }

    [LibraryImport(Library)] private static partial int cudaStreamCreateWithFlags(out IntPtr stream, uint flags);
    [LibraryImport(Library)] private static partial int cudaStreamCreateWithPriority(out IntPtr stream, uint flags, int priority);
    [LibraryImport(Library)] private static partial int cudaDeviceGetStreamPriorityRange(out int least, out int greatest);
    [LibraryImport(Library)] private static partial int cudaGetDevice(out int device);
    [LibraryImport(Library)] private static partial int cudaStreamDestroy(IntPtr stream);
    [LibraryImport(Library)] private static partial int cudaStreamSynchronize(IntPtr stream);
    [LibraryImport(Library)] private static partial int cudaStreamWaitEvent(IntPtr stream, IntPtr evt, uint flags);
    [LibraryImport(Library)] private static partial int cudaEventCreateWithFlags(out IntPtr evt, uint flags);
    [LibraryImport(Library)] private static partial int cudaEventDestroy(IntPtr evt);
    [LibraryImport(Library)] private static partial int cudaEventRecord(IntPtr evt, IntPtr stream);
    [LibraryImport(Library)] private static partial int cudaEventElapsedTime(out float ms, IntPtr start, IntPtr end);
    [LibraryImport(Library)] private static partial int cudaEventSynchronize(IntPtr evt);
    [LibraryImport(Library)] private static partial int cudaEventQuery(IntPtr evt);
    [LibraryImport(Library)] private static partial int cudaMemcpyAsync(IntPtr dst, IntPtr src, nuint count, int kind, IntPtr stream);
    [LibraryImport(Library)] private static partial int cudaMemcpy2DAsync(IntPtr dst, nuint dpitch, IntPtr src, nuint spitch, nuint width, nuint height, int kind, IntPtr stream);
    [LibraryImport(Library)] private static partial int cudaMemGetInfo(out nuint free, out nuint total);
    [LibraryImport(Library)] private static partial int cudaHostRegister(IntPtr ptr, nuint size, uint flags);
    [LibraryImport(Library)] private static partial int cudaHostUnregister(IntPtr ptr);
    [LibraryImport(Library)] private static partial IntPtr cudaGetErrorString(int error);
    [LibraryImport(Library)] private static partial int cudaStreamEndCapture(IntPtr stream, out IntPtr graph);
    [LibraryImport(Library)] private static partial int cudaGraphDestroy(IntPtr graph);
    [LibraryImport(Library)] private static partial int cudaGetLastError();

    private static void Check(int status, string call)
    {
        if (status == 0) return;
        var message = Marshal.PtrToStringAnsi(cudaGetErrorString(status)) ?? "unknown error";
        throw new ExternalException($"CUDA {call} failed: {message} ({status})", status);
    }

    public static IntPtr CreateStream()
    {
        Check(cudaStreamCreateWithFlags(out var s, StreamNonBlocking), "cudaStreamCreateWithFlags");
        return s;
    }

    /// <summary>
    /// A stream that orders with the legacy default stream (what other threads' libtorch work runs on) and runs at the
    /// device's greatest priority when <paramref name="high"/>, its least otherwise.
    /// </summary>
    public static IntPtr CreatePriorityStream(bool high)
    {
        Check(cudaDeviceGetStreamPriorityRange(out var least, out var greatest), "cudaDeviceGetStreamPriorityRange");
        Check(cudaStreamCreateWithPriority(out var s, 0, high ? greatest : least), "cudaStreamCreateWithPriority");
        return s;
    }

    public static int CurrentDevice()
    {
        Check(cudaGetDevice(out var device), "cudaGetDevice");
        return device;
    }

    public static void DestroyStream(IntPtr s) => cudaStreamDestroy(s);
    public static void SynchronizeStream(IntPtr s) => Check(cudaStreamSynchronize(s), "cudaStreamSynchronize");

    public static IntPtr CreateEvent()
    {
        Check(cudaEventCreateWithFlags(out var e, EventDisableTiming), "cudaEventCreateWithFlags");
        return e;
    }

    public static void DestroyEvent(IntPtr e) => cudaEventDestroy(e);

    /// <summary>An event that records a timestamp, for timelines (slower than the untimed ones used for ordering).</summary>
    public static IntPtr CreateTimingEvent()
    {
        Check(cudaEventCreateWithFlags(out var e, 0), "cudaEventCreateWithFlags");
        return e;
    }

    public static double ElapsedMs(IntPtr start, IntPtr end)
    {
        Check(cudaEventElapsedTime(out var ms, start, end), "cudaEventElapsedTime");
        return ms;
    }
    public static void Record(IntPtr e, IntPtr stream) => Check(cudaEventRecord(e, stream), "cudaEventRecord");
    public static void Wait(IntPtr stream, IntPtr e) => Check(cudaStreamWaitEvent(stream, e, 0), "cudaStreamWaitEvent");
    public static void Synchronize(IntPtr e) => Check(cudaEventSynchronize(e), "cudaEventSynchronize");
    /// <summary>True when all work before the event has completed.</summary>
    public static bool Query(IntPtr e) => cudaEventQuery(e) == 0;

    /// <summary>Whether the event has completed: false while its work is queued (cudaErrorNotReady); any other error throws.</summary>
    public static bool QueryChecked(IntPtr e)
    {
        var status = cudaEventQuery(e);
        if (status == CudaErrorNotReady) return false;
        Check(status, "cudaEventQuery");
        return true;
    }

    private const int CudaErrorNotReady = 600;

    public static void CopyAsync(IntPtr dst, IntPtr src, long bytes, IntPtr stream) =>
        Check(cudaMemcpyAsync(dst, src, (nuint)bytes, MemcpyDefault, stream), "cudaMemcpyAsync");

    /// <summary><paramref name="rows"/> rows of <paramref name="rowBytes"/> bytes, each at its own pitch on either side.</summary>
    public static void Copy2DAsync(IntPtr dst, long dstPitch, IntPtr src, long srcPitch, long rowBytes, long rows, IntPtr stream) =>
        Check(cudaMemcpy2DAsync(dst, (nuint)dstPitch, src, (nuint)srcPitch, (nuint)rowBytes, (nuint)rows, MemcpyDefault, stream), "cudaMemcpy2DAsync");

    /// <summary>Page-locks existing host memory in place (no copy, no rounding up as the caching host allocator does).</summary>
    public static void HostRegister(IntPtr ptr, long bytes) => Check(cudaHostRegister(ptr, (nuint)bytes, 0), "cudaHostRegister");

    public static void HostUnregister(IntPtr ptr) => Check(cudaHostUnregister(ptr), "cudaHostUnregister");

    /// <summary>
    /// Ends a stream capture that failed part-way and drops what it recorded; the status of the end call (an invalidated
    /// capture reports an error), and the error state the failure left cleared.
    /// </summary>
    public static int AbandonCapture(IntPtr stream)
    {
        var status = cudaStreamEndCapture(stream, out var graph);
        if (graph != IntPtr.Zero) cudaGraphDestroy(graph);
        cudaGetLastError();
        return status;
    }

    public static (long Free, long Total) MemoryInfo()
    {
        Check(cudaMemGetInfo(out var free, out var total), "cudaMemGetInfo");
        return ((long)free, (long)total);
    }
}
