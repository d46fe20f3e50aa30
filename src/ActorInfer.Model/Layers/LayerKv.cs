using static TorchSharp.torch;

namespace ActorInfer.Model.Layers;

/// <summary>
/// The preallocated key/value cache of one layer for one batch, [B, heads, capacity, head_dim] each. New keys
/// are written in place at their cache index (no concatenation per token). Owned by whoever allocated it.
/// </summary>
public class LayerKv : IDisposable
{
    public LayerKv(Tensor keys, Tensor values)
    {
        Keys = keys;
        Values = values;
    }

    public Tensor Keys { get; }
    public Tensor Values { get; }
    public long Capacity => Keys.size(2);

    public static LayerKv Allocate(int batch, int heads, int capacity, int headDim, ScalarType dtype, Device device) =>
        new(zeros([batch, heads, capacity, headDim], dtype: dtype, device: device),
            zeros([batch, heads, capacity, headDim], dtype: dtype, device: device));

    /// <summary>Writes [B, heads, T, head_dim] keys and values at cache indices [start, start + T).</summary>
    public virtual void Write(int start, Tensor keys, Tensor values)
    {
        var length = keys.size(2);
        if (start + length > Capacity)
            throw new InvalidOperationException($"KV cache overflow: writing up to index {start + length} of capacity {Capacity}");
        using var k = Keys.narrow(2, start, length);
        using var v = Values.narrow(2, start, length);
        k.copy_(keys);
        v.copy_(values);
    }

    /// <summary>Views of the first <paramref name="length"/> cache entries (caller disposes the views).</summary>
    public (Tensor Keys, Tensor Values) Prefix(int length) => (Keys.narrow(2, 0, length), Values.narrow(2, 0, length));

    public long Bytes => Keys.NumberOfElements * Keys.ElementSize * 2;

    public void Dispose()
    {
        Keys.Dispose();
        Values.Dispose();
    }
}
