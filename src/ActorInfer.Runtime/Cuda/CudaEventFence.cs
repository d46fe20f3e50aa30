using ActorInfer.Model.Generation;

namespace ActorInfer.Runtime.Cuda;

/// <summary>A CUDA event recorded on libtorch's stream after the work queued so far: ready once that work has run.</summary>
internal sealed class CudaEventFence : IReadyFence
{
    private IntPtr _event;

    public CudaEventFence()
    {
        _event = CudaRuntime.CreateEvent();
        CudaRuntime.Record(_event, CudaRuntime.ComputeStream);
    }

    public bool IsReady => _event == IntPtr.Zero || CudaRuntime.QueryChecked(_event);

    public void Wait()
    {
        if (_event != IntPtr.Zero) CudaRuntime.Synchronize(_event);
    }

    public void Dispose()
    {
        if (_event == IntPtr.Zero) return;
        CudaRuntime.DestroyEvent(_event);
        _event = IntPtr.Zero;
    }
}
