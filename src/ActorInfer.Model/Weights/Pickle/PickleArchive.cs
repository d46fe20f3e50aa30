using System.Text;
using ActorInfer.Model.Layers;
using Microsoft.Win32.SafeHandles;
using TorchSharp;

namespace ActorInfer.Model.Weights.Pickle;

/// <summary>
/// One <c>pytorch_model*.bin</c> (torch.save's zip format): the state dict's pickle is read at open, as data
/// (<see cref="StateDictPickle"/>); each tensor's bytes are read on load, in chunks, straight from its storage member.
/// </summary>
internal sealed class PickleArchive : IDisposable
{
    private const int ChunkBytes = 64 * 1024 * 1024;

    private readonly SafeFileHandle _file;
    private readonly Dictionary<string, (PickledTensor Tensor, ZipMember Storage)> _tensors;

    private PickleArchive(string path, SafeFileHandle file, Dictionary<string, (PickledTensor, ZipMember)> tensors)
    {
        Path = path;
        _file = file;
        _tensors = tensors;
    }

    public string Path { get; }

    /// <summary>The stored names, as the file spells them.</summary>
    public IEnumerable<string> Names => _tensors.Keys;

    public static PickleArchive Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"PyTorch checkpoint {path} does not exist", path);
        var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        try
        {
            Dictionary<string, ZipMember> members;
            try
            {
                members = ZipDirectory.Read(file, path);
            }
            catch (InvalidDataException e) when (e.Message.Contains("not a zip archive", StringComparison.Ordinal))
            {
                throw new InvalidDataException($"{path} is not in torch.save's zip format (the legacy format before PyTorch 1.6 is not read)", e);
            }
            var pickle = members.Values.FirstOrDefault(m => m.Name == "data.pkl" || m.Name.EndsWith("/data.pkl", StringComparison.Ordinal))
                ?? throw new InvalidDataException($"{path} holds no data.pkl: not a PyTorch checkpoint");
            var prefix = pickle.Name[..^"data.pkl".Length];
            if (members.TryGetValue(prefix + "byteorder", out var order) &&
                Encoding.ASCII.GetString(Bytes(file, order, path)) is var byteOrder && byteOrder != "little")
                throw new InvalidDataException($"{path} is stored {byteOrder}-endian; only little-endian checkpoints are read");
            var tensors = new Dictionary<string, (PickledTensor, ZipMember)>(StringComparer.Ordinal);
            foreach (var (name, tensor) in StateDictPickle.Read(Bytes(file, pickle, path), $"the pickle in {path}"))
            {
                if (!members.TryGetValue($"{prefix}data/{tensor.StorageKey}", out var storage))
                    throw new InvalidDataException($"{path}: tensor {name} names storage {tensor.StorageKey}, which the archive lacks");
                var elementSize = ElementSize(tensor.Dtype);
                if (!storage.Stored || storage.Length < tensor.StorageElements * elementSize)
                    throw new InvalidDataException($"{path}: the storage of tensor {name} is compressed or shorter than its {tensor.StorageElements} elements");
                if (tensor.Shape.Length != tensor.Stride.Length || tensor.Shape.Any(d => d < 0) || tensor.Offset < 0 ||
                    tensor.Offset + Extent(tensor) > tensor.StorageElements)
                    throw new InvalidDataException($"{path}: tensor {name} reaches outside its storage");
                if (!tensors.TryAdd(WeightName.Canonical(name), (tensor, storage)))
                    throw new InvalidDataException($"{path} holds tensor {name} twice (with and without 'model.')");
            }
            return new PickleArchive(path, file, tensors);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => _tensors.ContainsKey(WeightName.Canonical(name));

    public long[] Shape(string name) => (long[])Entry(name).Tensor.Shape.Clone();

    public torch.ScalarType Dtype(string name) => Entry(name).Tensor.Dtype;

    public torch.Tensor Load(string name, torch.ScalarType dtype, torch.Device device)
    {
        var stored = Read(name, Entry(name));
        if (stored.dtype == dtype && device.type == DeviceType.CPU) return stored;
        using (stored) return stored.to(dtype, device);
    }

    public void Dispose() => _file.Dispose();

    private (PickledTensor Tensor, ZipMember Storage) Entry(string name) =>
        _tensors.TryGetValue(WeightName.Canonical(name), out var entry)
            ? entry
            : throw new InvalidDataException($"PyTorch checkpoint {Path} has no tensor {name}");

    /// <summary>The elements a view spans in its storage, from its offset.</summary>
    private static long Extent(PickledTensor t)
    {
        if (t.Shape.Any(d => d == 0)) return 0;
        var extent = 1L;
        for (var i = 0; i < t.Shape.Length; i++) extent += (t.Shape[i] - 1) * t.Stride[i];
        return extent;
    }

    private torch.Tensor Read(string name, (PickledTensor Tensor, ZipMember Storage) entry)
    {
        ObjectDisposedException.ThrowIf(_file.IsClosed, this);
        var (tensor, storage) = entry;
        var extent = Extent(tensor);
        // A contiguous view (every state dict tensor transformers saves) is read straight into the result.
        var contiguous = IsContiguous(tensor);
        var target = contiguous ? torch.empty(tensor.Shape, tensor.Dtype, torch.CPU) : torch.empty([extent], tensor.Dtype, torch.CPU);
        try
        {
            using var flat = target.view(-1);
            var elementSize = ElementSize(tensor.Dtype);
            var chunkElements = Math.Max(1, ChunkBytes / elementSize);
            for (long start = 0; start < extent; start += chunkElements)
            {
                var count = Math.Min(chunkElements, extent - start);
                using var part = flat.narrow(0, start, count);
                ReadExactly(part.bytes, storage.DataOffset + (tensor.Offset + start) * elementSize, name);
            }
            if (contiguous) return target;
            using (target)
            using (var view = target.as_strided(tensor.Shape, tensor.Stride))
                return view.contiguous();
        }
        catch
        {
            target.Dispose();
            throw;
        }
    }

    private void ReadExactly(Span<byte> destination, long offset, string name)
    {
        while (destination.Length > 0)
        {
            var read = RandomAccess.Read(_file, destination, offset);
            if (read == 0) throw new InvalidDataException($"{Path} ends inside tensor {name}");
            destination = destination[read..];
            offset += read;
        }
    }

    private static bool IsContiguous(PickledTensor t)
    {
        var expected = 1L;
        for (var i = t.Shape.Length - 1; i >= 0; i--)
        {
            if (t.Shape[i] != 1 && t.Stride[i] != expected) return false;
            expected *= t.Shape[i];
        }
        return true;
    }

    private static byte[] Bytes(SafeFileHandle file, ZipMember member, string path) =>
        member.Stored && member.Length <= int.MaxValue
            ? ZipDirectory.Bytes(file, member.DataOffset, (int)member.Length, path)
            : throw new InvalidDataException($"{path}: member {member.Name} is compressed; torch.save stores its members uncompressed");

    private static int ElementSize(torch.ScalarType dtype) => dtype switch
    {
        torch.ScalarType.Float64 or torch.ScalarType.Int64 => 8,
        torch.ScalarType.Float32 or torch.ScalarType.Int32 => 4,
        torch.ScalarType.Float16 or torch.ScalarType.BFloat16 or torch.ScalarType.Int16 => 2,
        _ => 1,
    };
}
