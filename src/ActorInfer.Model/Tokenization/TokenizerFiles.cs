using System.Text.Json;

namespace ActorInfer.Model.Tokenization;

/// <summary>Reads Hugging Face tokenizer files; every problem names the file.</summary>
internal static class TokenizerFiles
{
    public static Dictionary<string, int> ReadVocab(string path)
    {
        using var doc = Parse(path);
        return ReadVocab(doc.RootElement, path);
    }

    /// <summary>merges.txt: one "left right" pair per line after an optional "#version" line.</summary>
    public static List<string> ReadMergesText(string path) =>
        File.ReadLines(path)
            .Where(line => line.Length > 0 && !line.StartsWith("#version", StringComparison.Ordinal))
            .ToList();

    /// <summary>
    /// How a tokenizer.json splits text before BPE: whether it is byte-level (GPT-2, OPT, Llama 3; SentencePiece-style files,
    /// as Llama 2 and Mistral ship, are not), and the regex of its Split pre-tokenizer (Llama 3's), when it has one.
    /// </summary>
    public static (bool ByteLevel, string? SplitPattern) ReadPreTokenizer(string path)
    {
        using var doc = Parse(path);
        var root = doc.RootElement;
        var byteLevel = false;
        string? pattern = null;
        void Visit(JsonElement e)
        {
            if (e.ValueKind != JsonValueKind.Object) return;
            var type = e.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
            if (type == "ByteLevel") byteLevel = true;
            if (type == "Split" && e.TryGetProperty("pattern", out var p) && p.ValueKind == JsonValueKind.Object &&
                p.TryGetProperty("Regex", out var regex) && regex.ValueKind == JsonValueKind.String)
                pattern ??= regex.GetString();
            foreach (var key in new[] { "pretokenizers", "decoders" })
                if (e.TryGetProperty(key, out var list) && list.ValueKind == JsonValueKind.Array)
                    foreach (var item in list.EnumerateArray()) Visit(item);
        }
        foreach (var key in new[] { "pre_tokenizer", "decoder" })
            if (root.TryGetProperty(key, out var part)) Visit(part);
        return (byteLevel, pattern);
    }

    /// <summary>tokenizer.json's BPE model; its added tokens marked special go into <paramref name="specials"/>.</summary>
    public static (Dictionary<string, int> Vocab, List<string> Merges) ReadTokenizerJson(
        string path, Dictionary<string, int> specials)
    {
        using var doc = Parse(path);
        var root = doc.RootElement;
        if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"tokenizer file {path} has no model object");
        if (model.TryGetProperty("type", out var type) && type.GetString() != "BPE")
            throw new InvalidDataException($"tokenizer file {path} holds a {type.GetString()} model, not BPE");
        if (!model.TryGetProperty("vocab", out var vocabJson))
            throw new InvalidDataException($"tokenizer file {path} has no model.vocab");
        var vocab = ReadVocab(vocabJson, path);
        if (!model.TryGetProperty("merges", out var mergesJson) || mergesJson.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"tokenizer file {path} has no model.merges");

        var merges = new List<string>(mergesJson.GetArrayLength());
        foreach (var merge in mergesJson.EnumerateArray())
        {
            // Older files spell a merge "left right", newer ones ["left", "right"].
            merges.Add(merge.ValueKind switch
            {
                JsonValueKind.String => merge.GetString()!,
                JsonValueKind.Array when merge.GetArrayLength() == 2 => $"{merge[0].GetString()} {merge[1].GetString()}",
                _ => throw new InvalidDataException($"tokenizer file {path} has a malformed merge {merge.GetRawText()}"),
            });
        }

        if (root.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array)
        {
            foreach (var token in added.EnumerateArray())
            {
                if (token.TryGetProperty("special", out var special) && special.ValueKind == JsonValueKind.True)
                    specials[token.GetProperty("content").GetString()!] = token.GetProperty("id").GetInt32();
            }
        }
        return (vocab, merges);
    }

    /// <summary>Whether the tokenizer prepends a token, and which; OPT's prepends <paramref name="fallback"/>.</summary>
    public static (bool AddBos, string Bos) ReadBos(string path, string fallback)
    {
        if (!File.Exists(path)) return (true, fallback);
        using var doc = Parse(path);
        var root = doc.RootElement;
        var addBos = !root.TryGetProperty("add_bos_token", out var add) || add.ValueKind != JsonValueKind.False;
        var bos = fallback;
        if (root.TryGetProperty("bos_token", out var token))
        {
            // Older configs spell special tokens as {"content": "</s>", ...} objects.
            bos = token.ValueKind switch
            {
                JsonValueKind.String => token.GetString()!,
                JsonValueKind.Object when token.TryGetProperty("content", out var c) => c.GetString()!,
                _ => fallback,
            };
        }
        return (addBos, bos);
    }

    private static Dictionary<string, int> ReadVocab(JsonElement json, string path)
    {
        if (json.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"tokenizer file {path}: the vocabulary is not a JSON object");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in json.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out var id) || id < 0)
                throw new InvalidDataException($"tokenizer file {path}: token '{entry.Name}' has no valid id");
            vocab[entry.Name] = id;
        }
        return vocab;
    }

    private static JsonDocument Parse(string path)
    {
        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"tokenizer file {path} is not valid JSON: {e.Message}", e);
        }
    }
}
