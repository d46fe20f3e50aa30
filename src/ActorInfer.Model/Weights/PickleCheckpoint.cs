using System.Text.Json;
using ActorInfer.Model.Layers;
using ActorInfer.Model.Weights.Pickle;
using TorchSharp;

namespace ActorInfer.Model.Weights;

/// <summary>
/// A Hugging Face checkpoint as PyTorch pickles: one <c>pytorch_model.bin</c>, or shards named by
/// <c>pytorch_model.bin.index.json</c>. Each file's pickle is read as data at open (anything but tensors and plain
/// containers is refused); tensor bytes only on load, one tensor at a time.
/// </summary>
public sealed class PickleCheckpoint : IWeightSource
{
    public const string IndexFile = "pytorch_model.bin.index.json";
    public const string SingleFile = "pytorch_model.bin";

    private readonly PickleArchive[] _shards;
    private readonly Dictionary<string, PickleArchive> _byName;

    private PickleCheckpoint(string directory, PickleArchive[] shards, Dictionary<string, PickleArchive> byName)
    {
        Directory = directory;
        _shards = shards;
        _byName = byName;
    }

    public string Directory { get; }

    /// <summary>Every tensor name, without the <c>model.</c> prefix.</summary>
    public IEnumerable<string> Names => _byName.Keys;

    /// <summary>Whether the folder holds a PyTorch pickle checkpoint.</summary>
    public static bool IsIn(string directory) =>
        File.Exists(Path.Combine(directory, IndexFile)) || File.Exists(Path.Combine(directory, SingleFile));

    public static PickleCheckpoint Open(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (!System.IO.Directory.Exists(directory))
            throw new DirectoryNotFoundException($"checkpoint directory {directory} does not exist");
        var index = Path.Combine(directory, IndexFile);
        var files = File.Exists(index) ? ShardFiles(index) : [SingleFile];
        var archives = new List<PickleArchive>();
        try
        {
            var byName = new Dictionary<string, PickleArchive>(StringComparer.Ordinal);
            foreach (var file in files)
            {
                var path = Path.Combine(directory, file);
                if (!File.Exists(path))
                    throw new FileNotFoundException(File.Exists(index) ? $"{index} names shard {file}, which does not exist"
                        : $"checkpoint directory {directory} holds no {SingleFile}", path);
                var archive = PickleArchive.Open(path);
                archives.Add(archive);
                foreach (var name in archive.Names)
                    if (!byName.TryAdd(name, archive))
                        throw new InvalidDataException($"tensor {name} is in both {byName[name].Path} and {path}");
            }
            return new PickleCheckpoint(directory, [.. archives], byName);
        }
        catch
        {
            foreach (var archive in archives) archive.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => _byName.ContainsKey(WeightName.Canonical(name));

    public long[] Shape(string name) => Shard(name).Shape(name);

    /// <summary>The stored dtype of a tensor.</summary>
    public torch.ScalarType Dtype(string name) => Shard(name).Dtype(name);

    public torch.Tensor Load(string name, torch.ScalarType dtype, torch.Device device) => Shard(name).Load(name, dtype, device);

    public void Dispose()
    {
        foreach (var shard in _shards) shard.Dispose();
    }

    private PickleArchive Shard(string name) =>
        _byName.TryGetValue(WeightName.Canonical(name), out var shard)
            ? shard
            : throw new InvalidDataException($"checkpoint {Directory} has no tensor {name}");

    /// <summary>The shard files the index names, in the order it first names them; each a file beside the index.</summary>
    private static List<string> ShardFiles(string index)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(index));
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{index} has no weight_map object");
            var files = new List<string>();
            foreach (var entry in map.EnumerateObject())
            {
                var file = entry.Value.ValueKind == JsonValueKind.String ? entry.Value.GetString()! : "";
                if (file.Length == 0 || file != Path.GetFileName(file))
                    throw new InvalidDataException($"{index} maps tensor {entry.Name} to '{entry.Value.GetRawText()}', not a file name");
                if (!files.Contains(file)) files.Add(file);
            }
            return files;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{index} is not valid JSON: {e.Message}", e);
        }
    }
}
