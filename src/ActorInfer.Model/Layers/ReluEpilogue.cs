using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace ActorInfer.Model.Layers;

/// <summary>
/// relu(x W^T + b) on CUDA as one product, the ReLU in the BLAS library's epilogue beside the bias: libtorch's
/// <c>_addmm_activation</c> (what PyTorch's fused linear-ReLU modules call), which TorchSharp does not expose, reached by its
/// operator's C++ symbol as <see cref="TensorData"/> reaches a tensor's data. OPT's fc1 without it is a product and then a
/// ReLU over its output: in an OPT-6.7B prefill of 32 prompts of 512 tokens that ReLU read and wrote 1 GB a layer, 343 us of
/// the layer's 10.8 ms on an H100 (docs/perf/h100-fused-kernels/). Where libtorch's conditions for the epilogue do not hold
/// it forms the product and the ReLU apart itself; the values are the same either way (a ReLU of the rounded sum is the
/// rounded ReLU). Every argument is checked here first: an exception thrown in C++ cannot cross into .NET.
/// <c>ACTORINFER_FC1_EPILOGUE=separate</c> keeps the product and the ReLU apart (for comparing the two).
/// </summary>
public static partial class ReluEpilogue
{
    private static readonly bool Separate = Environment.GetEnvironmentVariable("ACTORINFER_FC1_EPILOGUE") == "separate";
    // A c10::Scalar of 1 made by TorchSharp's native library (its managed Scalar keeps the handle to itself); never freed.
    private static IntPtr _one;
    private static int _unavailable;

    /// <summary>relu(x W^T + b) over the last dimension of <paramref name="x"/>, or null where it does not apply (the caller then forms it apart).</summary>
    /// <param name="x">[batch, tokens, in], contiguous, on CUDA.</param>
    /// <param name="weight">[out, in].</param>
    /// <param name="bias">[out], contiguous.</param>
    public static Tensor? TryLinearRelu(Tensor x, Tensor weight, Tensor bias) =>
        Separate || x.device_type != TorchSharp.DeviceType.CUDA ? null : Form(x, weight, bias);

    /// <summary>
    /// <see cref="TryLinearRelu"/> on any device (the engine takes it on CUDA only: on the CPU libtorch forms the product and
    /// the ReLU apart anyway); the tests call it on the CPU to check the native call.
    /// </summary>
    internal static Tensor? Form(Tensor x, Tensor weight, Tensor bias)
    {
        if (Volatile.Read(ref _unavailable) != 0) return null;
        var dtype = x.dtype;
        if (dtype is not (ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Float32)) return null;
        if (weight.device_type != x.device_type || bias.device_type != x.device_type || weight.device_index != x.device_index
            || bias.device_index != x.device_index) return null;
        if (weight.dtype != dtype || bias.dtype != dtype || x.dim() != 3 || weight.dim() != 2 || bias.dim() != 1) return null;
        if (!x.is_contiguous() || !bias.is_contiguous() || !weight.is_contiguous()) return null;
        long rows = x.size(0) * x.size(1), inner = x.size(2), outer = weight.size(0);
        if (rows < 1 || inner < 1 || weight.size(1) != inner || bias.size(0) != outer) return null;
        using var flat = x.view(rows, inner);
        using var transposed = weight.t();
        var output = empty([rows, outer], dtype, x.device);
        try
        {
            if (Volatile.Read(ref _one) == IntPtr.Zero) Interlocked.CompareExchange(ref _one, THSTorch_int64_to_scalar(1), IntPtr.Zero);
            Call(bias.Handle, flat.Handle, transposed.Handle, _one, _one, false, output.Handle);
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            output.Dispose();
            if (Interlocked.Exchange(ref _unavailable, 1) == 0)
                Console.Error.WriteLine($"fc1: libtorch's _addmm_activation was not found; the ReLU runs after the product ({ex.Message})");
            return null;
        }
        if (x.size(1) == 1) return output.unsqueeze_(1);
        using (output) return output.view(x.size(0), x.size(1), outer);
    }

    // at::_ops::_addmm_activation_out::call(self, mat1, mat2, beta, alpha, use_gelu, out): TorchSharp's tensor and scalar
    // handles are pointers to at::Tensor and c10::Scalar, what the references take.
    [LibraryImport("LibTorchSharp")] private static partial IntPtr THSTorch_int64_to_scalar(long value);

    [DllImport("torch_cpu", EntryPoint = "_ZN2at4_ops21_addmm_activation_out4callERKNS_6TensorES4_S4_RKN3c106ScalarES8_bRS2_")]
    private static extern IntPtr Call(IntPtr self, IntPtr mat1, IntPtr mat2, IntPtr beta, IntPtr alpha, [MarshalAs(UnmanagedType.U1)] bool useGelu, IntPtr output);
}
