using System.Text.Json;
using TorchSharp;

namespace ActorInfer.Model.Weights;

/// <summary>
/// A Hugging Face checkpoint directory: <c>model.safetensors.index.json</c> naming the shard of every tensor,
/// or a single <c>model.safetensors</c>. Shard headers are read at open; tensor data only on load.
/// </summary>
public sealed class SafetensorsCheckpoint : IWeightSource
{
    public const string IndexFile = "model.safetensors.index.json";
    public const string SingleFile = "model.safetensors";

    private readonly SafetensorsReader[] _shards;
    private readonly Dictionary<string, SafetensorsReader> _byName;

    private SafetensorsCheckpoint(string directory, SafetensorsReader[] shards, Dictionary<string, SafetensorsReader> byName)
    {
        Directory = directory;
        _shards = shards;
        _byName = byName;
    }

    public string Directory { get; }

    /// <summary>The shard files, in the order the index first names them.</summary>
    public IReadOnlyList<string> Files => _shards.Select(s => s.Path).ToArray();

    /// <summary>Every tensor name, without the <c>model.</c> prefix.</summary>
    public IEnumerable<string> Names => _byName.Keys;

    public static SafetensorsCheckpoint Open(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (!System.IO.Directory.Exists(directory))
            throw new DirectoryNotFoundException($"checkpoint directory {directory} does not exist");
        var index = Path.Combine(directory, IndexFile);
        if (File.Exists(index)) return OpenSharded(directory, index);
        var single = Path.Combine(directory, SingleFile);
        if (!File.Exists(single))
            throw new FileNotFoundException(
                $"checkpoint directory {directory} holds neither {IndexFile} nor {SingleFile}", single);
        var reader = SafetensorsReader.Open(single);
        return new SafetensorsCheckpoint(directory, [reader], reader.Names.ToDictionary(WeightName.Canonical, _ => reader));
    }

    public bool Contains(string name) => _byName.ContainsKey(WeightName.Canonical(name));

    public long[] Shape(string name) => Shard(name).Shape(name);

    /// <summary>The stored dtype of a tensor.</summary>
    public torch.ScalarType Dtype(string name) => Shard(name).Dtype(name);

    public torch.Tensor Load(string name, torch.ScalarType dtype, torch.Device device) =>
        Shard(name).Load(name, dtype, device);

    public void Dispose()
    {
        foreach (var shard in _shards) shard.Dispose();
    }

    private SafetensorsReader Shard(string name) =>
        _byName.TryGetValue(WeightName.Canonical(name), out var shard)
            ? shard
            : throw new InvalidDataException($"checkpoint {Directory} has no tensor {name}");

    private static SafetensorsCheckpoint OpenSharded(string directory, string index)
    {
        var weightMap = ReadWeightMap(index);
        var readers = new Dictionary<string, SafetensorsReader>(StringComparer.Ordinal);
        try
        {
            var byName = new Dictionary<string, SafetensorsReader>(StringComparer.Ordinal);
            foreach (var (name, file) in weightMap)
            {
                if (!readers.TryGetValue(file, out var reader))
                {
                    var path = Path.Combine(directory, file);
                    if (!File.Exists(path))
                        throw new FileNotFoundException($"{index} names shard {file}, which does not exist", path);
                    reader = SafetensorsReader.Open(path);
                    readers.Add(file, reader);
                }
                if (!reader.Contains(name))
                    throw new InvalidDataException($"{index} puts tensor {name} in {file}, which does not hold it");
                if (!byName.TryAdd(WeightName.Canonical(name), reader))
                    throw new InvalidDataException($"{index} names tensor {name} twice (with and without 'model.')");
            }
            return new SafetensorsCheckpoint(directory, readers.Values.ToArray(), byName);
        }
        catch
        {
            foreach (var reader in readers.Values) reader.Dispose();
            throw;
        }
    }

    private static List<(string Name, string File)> ReadWeightMap(string index)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(index));
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{index} has no weight_map object");
            var list = new List<(string, string)>();
            foreach (var entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String)
                    throw new InvalidDataException($"{index} maps tensor {entry.Name} to a non-string");
                var file = entry.Value.GetString()!;
                // A shard name is a file beside the index, never a path that leaves the directory.
                if (file.Length == 0 || file != Path.GetFileName(file))
                    throw new InvalidDataException($"{index} maps tensor {entry.Name} to '{file}', not a file name");
                list.Add((entry.Name, file));
            }
            return list;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{index} is not valid JSON: {e.Message}", e);
        }
    }
}
