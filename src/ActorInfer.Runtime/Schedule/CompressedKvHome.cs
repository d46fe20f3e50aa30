using ActorInfer.Model.Layers;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Schedule;

/// <summary>
/// The KV cache of one (decoder layer, GPU batch) kept 4-bit compressed in its home tier
/// (<see cref="CacheCompression"/>): token-major codes and ranges for keys and for values, in memory or in four
/// files. Attention never reads it in place: a working cache is expanded from it for each step, on the attention's
/// site, after the compressed prefix has been copied there, or on the CPU the codes are attended as they are; the
/// step's new entries are compressed on the device that computed them and stored.
/// </summary>
internal sealed class CompressedKvHome : IKvHome
{
    private readonly long _batch, _heads, _capacity, _headDim;
    private readonly ScalarType _dtype;
    private readonly Part[] _parts;

    /// <summary>Codes or ranges of keys or values: a memory lease or a file.</summary>
    private sealed record Part(string Name, ScalarType DType, long[] RowShape, TensorLease? Memory, DiskLease? File) : IDisposable
    {
        public long RowBytes => MemoryTier.BytesOf(RowShape, DType);
        public long[] Shape(long tokens) => [tokens, .. RowShape];
        public void Dispose()
        {
            Memory?.Dispose();
            File?.Dispose();
        }
    }

    public CompressedKvHome(TierSet tiers, TierKind tier, long[] shape, ScalarType dtype, string what)
    {
        Tier = tier;
        (_batch, _heads, _capacity, _headDim) = (shape[0], shape[1], shape[2], shape[3]);
        _dtype = dtype;
        var layouts = Layouts(shape, dtype);
        var parts = new List<Part>(layouts.Length);
        try
        {
            foreach (var (name, type, row) in layouts)
            {
                long[] full = [_capacity, .. row];
                parts.Add(tier == TierKind.Disk
                    ? new Part(name, type, row, null, tiers.RequireDisk().Allocate(MemoryTier.BytesOf(full, type), $"{name} of {what}"))
                    : new Part(name, type, row, tiers.Memory(tier).Allocate(full, type, $"{name} of {what}", zeroed: false), null));
            }
        }
        catch
        {
            foreach (var p in parts) p.Dispose();
            throw;
        }
        _parts = [.. parts];
    }

    /// <summary>The parts of a home of <paramref name="shape"/> [B, heads, capacity, head_dim]: each holds a row per token.</summary>
    private static (string Name, ScalarType DType, long[] Row)[] Layouts(long[] shape, ScalarType dtype)
    {
        var (batch, hidden) = (shape[0], shape[1] * shape[3]);
        var groups = CacheCompression.GroupsFor(hidden);
        return
        [
            ("key codes", ScalarType.Byte, [batch, hidden / 2]), ("key ranges", dtype, [batch, groups, 2]),
            ("value codes", ScalarType.Byte, [batch, hidden / 2]), ("value ranges", dtype, [batch, groups, 2]),
        ];
    }

    /// <summary>The buffers a home of <paramref name="shape"/> [B, heads, capacity, head_dim] takes in memory.</summary>
    public static IEnumerable<(long[] Shape, ScalarType DType)> Buffers(long[] shape, ScalarType dtype) =>
        Layouts(shape, dtype).Select(l => ((long[])[shape[2], .. l.Row], l.DType));

    public TierKind Tier { get; }

    /// <summary>Never read in place: attention works on an expanded copy.</summary>
    public LayerKv? Memory => null;

    /// <summary>Bytes this home holds, for <see cref="Placement.PlacementPlan"/>: <see cref="CacheCompression.RowBytes"/> per token, keys and values.</summary>
    public static long Bytes(long batch, long capacity, long hiddenSize, long elementSize) =>
        2 * batch * capacity * CacheCompression.RowBytes(hiddenSize, elementSize);

    public WorkingKv LoadPrefix(MemoryTier site, int length, Transfers transfers, string what)
    {
        var sources = new Tensor[_parts.Length];
        for (var i = 0; i < _parts.Length; i++)
        {
            var part = _parts[i];
            if (part.Memory is { } home && Tier == site.Kind)
            {
                sources[i] = home.Tensor.narrow(0, 0, length);
                transfers.Keep(sources[i]);
                continue;
            }
            var staging = site.Allocate(part.Shape(length), part.DType, $"{part.Name} of {what}, staged", zeroed: false);
            transfers.Keep(staging);
            sources[i] = staging.Tensor;
            if (part.File is { } file)
                transfers.ReadFile(file, 0, staging.Tensor, $"{part.Name} of {what}");
            else
            {
                var prefix = part.Memory!.Tensor.narrow(0, 0, length);
                transfers.Keep(prefix);
                transfers.Add(transfers.Engine.CopyAsync(staging.Tensor, prefix, CopyDirection.Load));
            }
        }
        // Attended on the CPU from the codes themselves where the kernel takes them: nothing is expanded (on the 2-core CPU an
        // OPT-30B-shaped layer's attention took about a tenth of the time of expanding then attending, docs/perf/cpu-attention-codes/).
        if (site.Kind == TierKind.Cpu && InvariantAttention.AttendsCodes(_headDim, _heads * _headDim))
            return new WorkingKv(null, null, new CacheCodes(sources[0], sources[1], sources[2], sources[3]));
        long[] shape = [_batch, _heads, length + 1, _headDim];
        var keys = site.Allocate(shape, _dtype, $"working keys of {what}", zeroed: false);
        transfers.Keep(keys);
        var values = site.Allocate(shape, _dtype, $"working values of {what}", zeroed: false);
        transfers.Keep(values);
        var work = new LayerKv(keys.Tensor, values.Tensor);
        // Expanded where attention computes, once the compressed prefix is there (the caller orders it after the copies).
        void Expand()
        {
            using var scope = NewDisposeScope();
            CacheCompression.DecompressInto(sources[0], sources[1], work.Keys.narrow(2, 0, length));
            CacheCompression.DecompressInto(sources[2], sources[3], work.Values.narrow(2, 0, length));
        }
        return new WorkingKv(work, Expand);
    }

    /// <summary>
    /// Tokens compressed at a time: a prompt's temporaries stay a fraction of its keys' size. Each token is compressed
    /// on its own, so the chunk size changes no result (tests set it small to run several chunks).
    /// </summary>
    internal static int StoreChunkTokens { get; set; } = 128;

    public void Store(int start, Tensor keys, Tensor values, ICopyEngine engine, TierSet tiers, Transfers pending, string what)
    {
        var tokens = (int)keys.size(2);
        for (var first = 0; first < tokens; first += StoreChunkTokens)
        {
            var count = Math.Min(StoreChunkTokens, tokens - first);
            using var keyChunk = keys.narrow(2, first, count);
            using var valueChunk = values.narrow(2, first, count);
            StoreCompressed(start + first, keyChunk, valueChunk, engine, tiers, pending, what);
        }
    }

    private void StoreCompressed(int start, Tensor keys, Tensor values, ICopyEngine engine, TierSet tiers, Transfers pending, string what)
    {
        var (keyCodes, keyRanges) = CacheCompression.Compress(keys);
        var (valueCodes, valueRanges) = CacheCompression.Compress(values);
        Tensor[] compressed = [keyCodes, keyRanges, valueCodes, valueRanges];
        var length = keys.size(2);
        var after = Tier == TierKind.Device ? null : engine.AfterCompute();
        for (var i = 0; i < _parts.Length; i++)
        {
            var part = _parts[i];
            var source = compressed[i];
            if (part.File is { } file)
            {
                using (source)
                    Transfers.WriteFile(engine, tiers, file, start * part.RowBytes, source, $"{part.Name} of {what}");
                continue;
            }
            var destination = part.Memory!.Tensor.narrow(0, start, length);
            if (after is null)
            {
                // Home is the compute device: written in compute order, like the computation itself.
                using (destination)
                using (source)
                    destination.copy_(source);
                continue;
            }
            pending.Keep(destination);
            pending.Keep(source);
            pending.Add(engine.CopyAfter(after, destination, source, CopyDirection.Store));
        }
    }

    public void Dispose()
    {
        foreach (var part in _parts) part.Dispose();
    }
}
