using ActorInfer.Model.Layers;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Schedule;

/// <summary>
/// The KV cache of one (decoder layer, GPU batch) in its home tier. In memory it is a <see cref="LayerKv"/>
/// [B, heads, capacity, head_dim]; on disk two files laid out token-major [capacity, B, heads, head_dim], so a
/// step's new entries are one contiguous write and a prefix is one contiguous read.
/// </summary>
internal sealed class KvHome : IKvHome
{
    private readonly TensorLease? _keys, _values;
    private readonly DiskLease? _keyFile, _valueFile;
    private readonly long[] _shape;
    private readonly ScalarType _dtype;

    public KvHome(TierSet tiers, TierKind tier, long[] shape, ScalarType dtype, string what)
    {
        Tier = tier;
        _shape = shape;
        _dtype = dtype;
        if (tier == TierKind.Disk)
        {
            var bytes = MemoryTier.BytesOf(shape, dtype);
            _keyFile = tiers.RequireDisk().Allocate(bytes, $"keys of {what}");
            try { _valueFile = tiers.RequireDisk().Allocate(bytes, $"values of {what}"); }
            catch { _keyFile.Dispose(); throw; }
        }
        else
        {
            // Off the device it is read only up to the tokens written: a reused buffer needs no zeroing. On the device
            // attention reads a rounded-up length whose unwritten entries are masked: they must be zeros, not garbage
            // (a masked NaN still poisons the weighted sum).
            var zeroed = tier == TierKind.Device;
            _keys = tiers.Memory(tier).Allocate(shape, dtype, $"keys of {what}", zeroed);
            try { _values = tiers.Memory(tier).Allocate(shape, dtype, $"values of {what}", zeroed); }
            catch { _keys.Dispose(); throw; }
            Memory = new LayerKv(_keys.Tensor, _values.Tensor);
        }
    }

    /// <summary>The buffers a home of <paramref name="shape"/> takes in memory: keys and values.</summary>
    public static IEnumerable<(long[] Shape, ScalarType DType)> Buffers(long[] shape, ScalarType dtype) => [(shape, dtype), (shape, dtype)];

    public TierKind Tier { get; }
    /// <summary>The in-memory cache (null on disk). Its tensors belong to the leases.</summary>
    public LayerKv? Memory { get; }

    private long RowBytes => _shape[0] * _shape[1] * _shape[3] * MemoryTier.ElementSize(_dtype);

    public WorkingKv LoadPrefix(MemoryTier site, int length, Transfers transfers, string what)
    {
        long[] shape = [_shape[0], _shape[1], length + 1, _shape[3]];
        var keys = site.Allocate(shape, _dtype, $"working keys of {what}");
        transfers.Keep(keys);
        var values = site.Allocate(shape, _dtype, $"working values of {what}");
        transfers.Keep(values);
        var work = new LayerKv(keys.Tensor, values.Tensor);
        if (Memory is not null)
        {
            var (src, dst) = (Memory.Prefix(length), work.Prefix(length));
            transfers.Keep(src.Keys); transfers.Keep(src.Values); transfers.Keep(dst.Keys); transfers.Keep(dst.Values);
            transfers.Add(transfers.Engine.CopyAsync(dst.Keys, src.Keys, CopyDirection.Load));
            transfers.Add(transfers.Engine.CopyAsync(dst.Values, src.Values, CopyDirection.Load));
            return new WorkingKv(work, null);
        }
        foreach (var (file, into) in new[] { (_keyFile!, keys.Tensor), (_valueFile!, values.Tensor) })
        {
            using var tokenMajor = site.Allocate([length, _shape[0], _shape[1], _shape[3]], _dtype, $"disk read of {what}");
            transfers.ReadFile(file, 0, tokenMajor.Tensor, what);
            transfers.BeforeCompute();
            using var prefix = into.narrow(2, 0, length);
            using var permuted = tokenMajor.Tensor.permute(1, 2, 0, 3);
            prefix.copy_(permuted);
        }
        return new WorkingKv(work, null);
    }

    public void Store(int start, Tensor keys, Tensor values, ICopyEngine engine, TierSet tiers, Transfers pending, string what)
    {
        if (Memory is not null)
        {
            var length = keys.size(2);
            var k = Memory.Keys.narrow(2, start, length);
            var v = Memory.Values.narrow(2, start, length);
            // Aliases keep this step's keys and values alive after the caller disposes them, until the copy is done.
            var (ks, vs) = (keys.alias(), values.alias());
            pending.Keep(k); pending.Keep(v); pending.Keep(ks); pending.Keep(vs);
            var after = engine.AfterCompute();
            pending.Add(engine.CopyAfter(after, k, ks, CopyDirection.Store));
            pending.Add(engine.CopyAfter(after, v, vs, CopyDirection.Store));
            return;
        }
        using var kt = keys.permute(2, 0, 1, 3);
        using var vt = values.permute(2, 0, 1, 3);
        Transfers.WriteFile(engine, tiers, _keyFile!, start * RowBytes, kt, $"keys of {what}");
        Transfers.WriteFile(engine, tiers, _valueFile!, start * RowBytes, vt, $"values of {what}");
    }

    public void Dispose()
    {
        _keys?.Dispose();
        _values?.Dispose();
        _keyFile?.Dispose();
        _valueFile?.Dispose();
    }
}
