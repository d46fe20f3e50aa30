using ActorInfer.Model.Layers;
using Microsoft.Win32.SafeHandles;
using TorchSharp;

namespace ActorInfer.Model.Weights;

/// <summary>
/// One <c>.safetensors</c> file, read lazily: only the header at open, then one tensor per
/// <see cref="Load(string, torch.ScalarType, torch.Device)"/>, in chunks, straight into the tensor's memory.
/// Thread-safe for concurrent loads (positioned reads, no shared file position).
/// </summary>
public sealed class SafetensorsReader : IWeightSource
{
    /// <summary>Bytes read per call: bounds how much one span of the destination covers (spans are int-sized).</summary>
    internal const int DefaultChunkBytes = 64 * 1024 * 1024;

    private readonly SafeFileHandle _file;
    private readonly Dictionary<string, SafetensorsEntry> _entries;

    private SafetensorsReader(string path, SafeFileHandle file, Dictionary<string, SafetensorsEntry> entries)
    {
        Path = path;
        _file = file;
        _entries = entries;
    }

    public string Path { get; }

    /// <summary>The stored names, as the file spells them.</summary>
    public IEnumerable<string> Names => _entries.Values.Select(e => e.Name);

    internal int ChunkBytes { get; init; } = DefaultChunkBytes;

    /// <summary>Opens <paramref name="path"/> and checks its header against the file's length.</summary>
    public static SafetensorsReader Open(string path) => Open(path, DefaultChunkBytes);

    internal static SafetensorsReader Open(string path, int chunkBytes)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"safetensors file {path} does not exist", path);
        var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        try
        {
            var entries = new Dictionary<string, SafetensorsEntry>(StringComparer.Ordinal);
            foreach (var entry in SafetensorsFormat.ReadHeader(file, path))
            {
                if (!entries.TryAdd(WeightName.Canonical(entry.Name), entry))
                    throw new InvalidDataException(
                        $"safetensors file {path} holds tensor {entry.Name} twice (with and without 'model.')");
            }
            return new SafetensorsReader(path, file, entries) { ChunkBytes = chunkBytes };
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => _entries.ContainsKey(WeightName.Canonical(name));

    public long[] Shape(string name) => (long[])Entry(name).Shape.Clone();

    /// <summary>The stored dtype of a tensor.</summary>
    public torch.ScalarType Dtype(string name) => Entry(name).Dtype;

    /// <summary>The header entry of a tensor; throws <see cref="InvalidDataException"/> naming it when absent.</summary>
    public SafetensorsEntry Entry(string name) =>
        _entries.TryGetValue(WeightName.Canonical(name), out var entry)
            ? entry
            : throw new InvalidDataException($"safetensors file {Path} has no tensor {name}");

    /// <summary>Reads one tensor as stored (its own dtype) into CPU memory.</summary>
    public torch.Tensor Load(string name) => Read(Entry(name));

    public torch.Tensor Load(string name, torch.ScalarType dtype, torch.Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        var stored = Read(Entry(name));
        if (stored.dtype == dtype && device.type == DeviceType.CPU) return stored;
        using (stored)
        {
            return stored.to(dtype, device);
        }
    }

    public void Dispose() => _file.Dispose();

    private torch.Tensor Read(SafetensorsEntry entry)
    {
        ObjectDisposedException.ThrowIf(_file.IsClosed, this);
        var tensor = torch.empty(entry.Shape, entry.Dtype, torch.CPU);
        try
        {
            if (entry.ByteLength == 0) return tensor;
            var elementSize = SafetensorsFormat.ElementSize(entry.Dtype);
            var chunkElements = Math.Max(1, ChunkBytes / elementSize);
            using var flat = tensor.view(-1);
            var total = flat.size(0);
            for (long start = 0; start < total; start += chunkElements)
            {
                var count = Math.Min(chunkElements, total - start);
                using var part = flat.narrow(0, start, count);
                SafetensorsFormat.ReadExactly(
                    _file, part.bytes, entry.DataOffset + start * elementSize, Path, $"tensor {entry.Name}");
            }
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }
}

/// <summary>Hugging Face OPTForCausalLM prefixes decoder keys with <c>model.</c>; lookups ignore that prefix.</summary>
internal static class WeightName
{
    private const string Prefix = "model.";

    public static string Canonical(string name) =>
        name.StartsWith(Prefix, StringComparison.Ordinal) ? name[Prefix.Length..] : name;
}
