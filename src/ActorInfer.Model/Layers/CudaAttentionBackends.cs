using System.Runtime.InteropServices;

namespace ActorInfer.Model.Layers;

/// <summary>
/// Which kernels <c>scaled_dot_product_attention</c> may use on CUDA, per call: cuDNN's for decoding (one query per
/// sequence), where it is the fastest, and not for a prefill. cuDNN builds a plan on the calling thread for every new
/// (batch, query length, key length) shape, with the GPU idle meanwhile: about 47 ms a shape, and 0.5 to 1 s for a new
/// kind of shape (docs/perf/attention/). Prefills change shape with every block size and every block of resumed
/// sequences; flash attention (causal, unmasked) and the memory-efficient kernel (masked) plan nothing. Switching cuDNN
/// off for decoding too made decoding 20% slower, so it stays on there. TorchSharp exposes no switch for it: libtorch's
/// own <c>at::globalContext().setSDPUseCuDNN</c> is called, and only when the choice changes.
/// </summary>
public static class CudaAttentionBackends
{
    private static bool? _cudnn;
    private static bool _unavailable;

    /// <summary>Allows cuDNN's kernel for the next attention calls or not (the tensor thread's, one at a time).</summary>
    public static void UseCudnn(bool allowed)
    {
        if (_unavailable || _cudnn == allowed) return;
        try
        {
            SetSdpUseCudnn(GlobalContext(), allowed);
            _cudnn = allowed;
        }
        catch (Exception ex) when (ex is EntryPointNotFoundException or DllNotFoundException)
        {
            _unavailable = true;
            Console.Error.WriteLine($"attention: libtorch's cuDNN attention switch is not available ({ex.Message}); every attention call may use cuDNN");
        }
    }

    /// <summary>Whether libtorch would consider cuDNN's attention now.</summary>
    public static bool CudnnEnabled => UserEnabledCudnnSdp(GlobalContext());

    // at::globalContext(), at::Context::setSDPUseCuDNN(bool) and userEnabledCuDNNSDP(), by their Itanium-mangled names
    // (libtorch's C++ API; `this` is the first argument).
    [DllImport("torch_cpu", EntryPoint = "_ZN2at13globalContextEv")]
    private static extern IntPtr GlobalContext();

    [DllImport("torch_cpu", EntryPoint = "_ZN2at7Context14setSDPUseCuDNNEb")]
    private static extern void SetSdpUseCudnn(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool enabled);

    [DllImport("torch_cpu", EntryPoint = "_ZNK2at7Context19userEnabledCuDNNSDPEv")]
    [return: MarshalAs(UnmanagedType.U1)]
    private static extern bool UserEnabledCudnnSdp(IntPtr context);
}
