using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace ActorInfer.Model.Layers;

/// <summary>
/// The raw data pointer of a tensor, its storage offset included: TorchSharp's native <c>THSTensor_data</c> (its
/// <c>Storage.data_ptr</c> throws for Half). For kernels and copies that TorchSharp does not expose.
/// </summary>
public static partial class TensorData
{
    [LibraryImport("LibTorchSharp")] private static partial IntPtr THSTensor_data(IntPtr handle);

    public static IntPtr Pointer(Tensor t) => THSTensor_data(t.Handle);
}
