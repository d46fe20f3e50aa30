using static TorchSharp.torch;

namespace ActorInfer.Model.Layers;

/// <summary>
/// A tensor's sizes and strides without TorchSharp's <c>shape</c> and <c>stride()</c>, which leave a finalizable
/// buffer behind on every call: on the hot path that was hundreds of objects a second for the garbage collector to
/// finalize, and pauses of tens of milliseconds on the thread that issues the GPU work.
/// </summary>
public static class TensorShape
{
    public static long[] Dims(this Tensor t)
    {
        var dims = new long[t.dim()];
        for (var i = 0; i < dims.Length; i++) dims[i] = t.size(i);
        return dims;
    }

    public static long[] Strides(this Tensor t)
    {
        var strides = new long[t.dim()];
        for (var i = 0; i < strides.Length; i++) strides[i] = t.stride(i);
        return strides;
    }
}
