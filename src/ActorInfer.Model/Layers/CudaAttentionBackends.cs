using System.Runtime.InteropServices;

namespace ActorInfer.Model.Layers;

/// <summary>
/// Keeps cuDNN's attention out of <c>scaled_dot_product_attention</c> on CUDA. cuDNN's kernel builds a plan for every
/// new shape (batch, query and key lengths): on an H200 with libtorch 2.11, about 47 ms per new shape and a second for
/// the process's first, with the GPU idle meanwhile; a block of a new size meets several new shapes (its prefill, each
/// 64-token step of its attended cache), so every policy change paid them again. The memory-efficient kernel takes the
/// same masked inputs with no per-shape plan (0.1 to 0.3 ms on a first call) and runs as fast or faster
/// (docs/perf/h200-attention-first-call.txt). Flash attention (unmasked causal prefills) is left as it is.
/// TorchSharp exposes no switch for it: libtorch's own <c>at::globalContext().setSDPUseCuDNN(false)</c> is called.
/// </summary>
public static class CudaAttentionBackends
{
    private static readonly Lazy<string?> Configured = new(SwitchOffCudnn, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>
    /// Switches cuDNN's attention off once per process (the first call does it). Null when done, else why it could
    /// not be (a libtorch without the call): attention then still works, with cuDNN's per-shape plans.
    /// </summary>
    public static string? Ensure() => Configured.Value;

    private static string? SwitchOffCudnn()
    {
        try
        {
            SetSdpUseCudnn(GlobalContext(), false);
            return null;
        }
        catch (Exception ex) when (ex is EntryPointNotFoundException or DllNotFoundException)
        {
            var why = $"cuDNN's attention could not be switched off ({ex.Message}); new attention shapes plan per shape";
            Console.Error.WriteLine($"attention: {why}");
            return why;
        }
    }

    // at::globalContext() and at::Context::setSDPUseCuDNN(bool), by their Itanium-mangled names (libtorch's C++ API;
    // `this` is the first argument).
    [DllImport("torch_cpu", EntryPoint = "_ZN2at13globalContextEv")]
    private static extern IntPtr GlobalContext();

    [DllImport("torch_cpu", EntryPoint = "_ZN2at7Context14setSDPUseCuDNNEb")]
    private static extern void SetSdpUseCudnn(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool enabled);

    [DllImport("torch_cpu", EntryPoint = "_ZNK2at7Context19userEnabledCuDNNSDPEv")]
    [return: MarshalAs(UnmanagedType.U1)]
    private static extern bool UserEnabledCudnnSdp(IntPtr context);

    /// <summary>Whether libtorch would consider cuDNN's attention (false once <see cref="Ensure"/> has switched it off).</summary>
    public static bool CudnnEnabled => UserEnabledCudnnSdp(GlobalContext());
}
