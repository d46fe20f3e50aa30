using System.Text.Json;
using ActorInfer.Planning;

namespace ActorInfer.Cli.Planning;

/// <summary>
/// Turns a model name or a Hugging Face model directory into the planner's plain-number <see cref="ModelSpec"/>.
/// Reads config.json itself so that planning does not depend on the model project's loader.
/// </summary>
public static class ModelSpecMapper
{
    public static ModelSpec Resolve(string nameOrDirectory)
    {
        if (Directory.Exists(nameOrDirectory))
            return FromDirectory(nameOrDirectory);
        return OptModels.Find(nameOrDirectory) ?? throw new CliException(
            $"unknown model '{nameOrDirectory}': not a directory with config.json, nor one of {string.Join(", ", OptModels.All.Select(m => m.Name))}");
    }

    public static ModelSpec FromDirectory(string directory)
    {
        var path = Path.Combine(directory, "config.json");
        if (!File.Exists(path))
            throw new CliException($"model directory '{directory}' has no config.json");
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(path));
            var root = document.RootElement;
            var name = root.TryGetProperty("_name_or_path", out var named) && named.ValueKind == JsonValueKind.String && !string.IsNullOrWhiteSpace(named.GetString())
                ? named.GetString()!
                : Path.GetFileName(Path.GetFullPath(directory).TrimEnd(Path.DirectorySeparatorChar));
            return new ModelSpec(
                name,
                numLayers: Integer(root, "num_hidden_layers", path),
                hiddenSize: Integer(root, "hidden_size", path),
                numHeads: Integer(root, "num_attention_heads", path),
                ffnSize: Integer(root, "ffn_dim", path),
                vocabSize: Integer(root, "vocab_size", path),
                maxPositions: root.TryGetProperty("max_position_embeddings", out _) ? Integer(root, "max_position_embeddings", path) : 2048,
                bytesPerElement: BytesPerElement(root, path));
        }
        catch (JsonException ex)
        {
            throw new CliException($"'{path}' is not valid JSON: {ex.Message}");
        }
        catch (ArgumentException ex)
        {
            throw new CliException($"'{path}': {ex.Message}");
        }
    }

    private static int Integer(JsonElement root, string key, string path)
    {
        if (!root.TryGetProperty(key, out var element))
            throw new CliException($"'{path}' lacks '{key}'");
        if (element.ValueKind != JsonValueKind.Number || !element.TryGetInt32(out var value))
            throw new CliException($"'{path}': '{key}' must be an integer, got {element.GetRawText()}");
        return value;
    }

    private static int BytesPerElement(JsonElement root, string path)
    {
        if (!root.TryGetProperty("torch_dtype", out var element) || element.ValueKind == JsonValueKind.Null)
            return 2;
        return element.GetString() switch
        {
            "float16" or "bfloat16" => 2,
            "float32" => 4,
            var other => throw new CliException($"'{path}': unsupported torch_dtype '{other}'"),
        };
    }
}
