using System.Runtime.InteropServices;

namespace ActorInfer.Model.Layers;

/// <summary>
/// Which kernels attention uses on CUDA. Decoding (one query per sequence) runs by batched products by default
/// (<see cref="AttentionMath.AttendByProducts"/>), or by cuDNN's fused kernel when asked: cuDNN builds a plan on the calling
/// thread for every new (batch, key length, cache stride) shape, with the GPU idle meanwhile (40 to 120 ms a shape, and
/// about 1 s for the process's first), and the plans belong to that thread (docs/perf/attention/). A change of budget
/// that arrives then waits for the plan. A prefill never uses cuDNN's kernel (it changes shape with every block size
/// and every block of resumed sequences): flash attention (causal, unmasked) and the memory-efficient kernel (masked)
/// plan nothing. TorchSharp exposes no switch for it: libtorch's own <c>at::globalContext().setSDPUseCuDNN</c> is
/// called, and only when the choice changes.
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

/// <summary>The kernels of decoding attention on CUDA (<c>--decode-attention</c>).</summary>
public enum DecodeAttention
{
    /// <summary>Two batched matrix products around a softmax: no plan per shape.</summary>
    Products,
    /// <summary>cuDNN's fused kernel: faster per call, but it plans every new (batch, length) shape on the tensor thread.</summary>
    Cudnn,
    /// <summary>
    /// libtorch's memory-efficient fused kernel, masked by the boolean mask: one kernel where the products take five, and
    /// no plan per shape; attended over a length rounded up to 64, as for cuDNN.
    /// </summary>
    Efficient,
    /// <summary>
    /// Our own kernel (<see cref="DecodeAttentionCuda"/>): one pass over the cache split over its length, scores, softmax and
    /// weighted values in single precision, no plan per shape; batched products where it does not apply.
    /// </summary>
    Fused,
}

/// <summary>The names of <see cref="DecodeAttention"/> in `--decode-attention` and `actorinfer.decode-attention`.</summary>
public static class DecodeAttentionNames
{
    public static readonly string[] All = ["products", "cudnn", "efficient", "fused"];

    /// <summary>The kind a name (one of <see cref="All"/>) stands for.</summary>
    public static DecodeAttention Parse(string name) => name switch
    {
        "products" => DecodeAttention.Products,
        "cudnn" => DecodeAttention.Cudnn,
        "efficient" => DecodeAttention.Efficient,
        "fused" => DecodeAttention.Fused,
        _ => throw new ArgumentException($"'{name}' is not one of {string.Join(", ", All)}", nameof(name)),
    };
}
