using static TorchSharp.torch;

namespace ActorInfer.Model.Layers;

/// <summary>
/// The reference semantics of a compressed KV cache on one device: attention sees every earlier token's keys and
/// values as compression left them and the current step's exactly. Entries are written exact; before the next
/// write, every entry written before is replaced by its compressed-then-expanded value (FlexGen's order: the new
/// token joins the expanded cache uncompressed, and is compressed when it is stored).
/// </summary>
public sealed class CompressedLayerKv(Tensor keys, Tensor values) : LayerKv(keys, values)
{
    private int _settled;
    private int _written;

    public static new CompressedLayerKv Allocate(int batch, int heads, int capacity, int headDim, ScalarType dtype, Device device) =>
        new(zeros([batch, heads, capacity, headDim], dtype: dtype, device: device),
            zeros([batch, heads, capacity, headDim], dtype: dtype, device: device));

    public override void Write(int start, Tensor keys, Tensor values)
    {
        Settle(start);
        base.Write(start, keys, values);
        _written = Math.Max(_written, start + (int)keys.size(2));
    }

    /// <summary>Round-trips the entries written before <paramref name="upTo"/> that have not been yet.</summary>
    private void Settle(int upTo)
    {
        var end = Math.Min(upTo, _written);
        if (end <= _settled) return;
        using var scope = NewDisposeScope();
        foreach (var cache in new[] { Keys, Values })
        {
            var entries = cache.narrow(2, _settled, end - _settled);
            var (codes, ranges) = CacheCompression.Compress(entries);
            CacheCompression.DecompressInto(codes, ranges, entries);
        }
        _settled = end;
    }
}
