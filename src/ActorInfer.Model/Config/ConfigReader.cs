using System.Text.Json;

namespace ActorInfer.Model.Config;

/// <summary>Reads config.json's keys; every problem names the file and the key.</summary>
internal readonly record struct ConfigReader(string Path, JsonElement Root)
{
    /// <summary>Parses the config.json at <paramref name="path"/> with <paramref name="parse"/>; a missing file or bad JSON is named.</summary>
    public static T ReadFile<T>(string path, Func<ConfigReader, string, T> parse)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"config.json not found at {path}", path);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"config.json at {path} is not valid JSON: {e.Message}", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"config.json at {path} is not a JSON object");
            return parse(new ConfigReader(path, doc.RootElement), path);
        }
    }

    public InvalidDataException Error(string what) => new($"config.json at {Path} {what}");

    public bool Has(string key) =>
        Root.TryGetProperty(key, out var v) && v.ValueKind != JsonValueKind.Null;

    public string? OptionalString(string key)
    {
        if (!Root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind == JsonValueKind.String
            ? v.GetString()
            : throw Error($"has key '{key}' of type {v.ValueKind}; expected a string");
    }

    public int PositiveInt(string key)
    {
        if (!Has(key)) throw Error($"lacks the required key '{key}'");
        var value = Int(key);
        return value > 0 ? value : throw Error($"has key '{key}' = {value}; it must be positive");
    }

    public int TokenId(string key, int fallback)
    {
        if (!Has(key)) return fallback;
        var value = Int(key);
        return value >= 0 ? value : throw Error($"has key '{key}' = {value}; a token id cannot be negative");
    }

    public bool Bool(string key, bool fallback)
    {
        if (!Has(key)) return fallback;
        var v = Root.GetProperty(key);
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Error($"has key '{key}' of type {v.ValueKind}; expected true or false"),
        };
    }

    private int Int(string key)
    {
        var v = Root.GetProperty(key);
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out var value))
            throw Error($"has key '{key}' = {v.GetRawText()}; expected an integer");
        return value;
    }

    public double Double(string key, double fallback)
    {
        if (!Has(key)) return fallback;
        var v = Root.GetProperty(key);
        return v.ValueKind == JsonValueKind.Number
            ? v.GetDouble()
            : throw Error($"has key '{key}' = {v.GetRawText()}; expected a number");
    }

    public int Int(string key, int fallback) => Has(key) ? Int(key) : fallback;

    /// <summary>A nested object (rope_scaling, rope_parameters) read with the same checks; null when absent.</summary>
    public ConfigReader? Object(string key)
    {
        if (!Has(key)) return null;
        var v = Root.GetProperty(key);
        return v.ValueKind == JsonValueKind.Object
            ? new ConfigReader($"{Path}, key '{key}',", v)
            : throw Error($"has key '{key}' of type {v.ValueKind}; expected an object");
    }

    /// <summary>A token id that may be given as a list (Llama 3.1's eos_token_id): the first of it.</summary>
    public int FirstTokenId(string key, int fallback)
    {
        if (!Has(key)) return fallback;
        var v = Root.GetProperty(key);
        if (v.ValueKind != JsonValueKind.Array) return TokenId(key, fallback);
        foreach (var item in v.EnumerateArray())
            return item.ValueKind == JsonValueKind.Number && item.TryGetInt32(out var id) && id >= 0
                ? id
                : throw Error($"has key '{key}' = {v.GetRawText()}; expected token ids");
        return fallback;
    }

    /// <summary>The strings of a list (architectures); empty when absent.</summary>
    public IReadOnlyList<string> Strings(string key)
    {
        if (!Has(key)) return [];
        var v = Root.GetProperty(key);
        if (v.ValueKind != JsonValueKind.Array) throw Error($"has key '{key}' of type {v.ValueKind}; expected a list of strings");
        var strings = new List<string>();
        foreach (var e in v.EnumerateArray())
            strings.Add(e.ValueKind == JsonValueKind.String
                ? e.GetString()!
                : throw Error($"has key '{key}' = {v.GetRawText()}; expected a list of strings"));
        return strings;
    }
}
