using System.Text.Json;

namespace ActorInfer.Model.Generation;

/// <summary>
/// Parses an OpenAI completion request body strictly: every field is type-checked and range-checked, and an
/// error names the field. Shared by the CLI's JSONL input and the HTTP gateway so both accept the same things.
/// </summary>
public static class CompletionRequestParser
{
    private static readonly HashSet<string> Known =
    [
        "id", "model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "echo", "logprobs",
        "n", "stream", "user", "ignore_eos", "stream_options",
    ];

    public const int MaxStopSequences = 4;
    public const int MaxLogprobs = 5;

    public static CompletionRequest Parse(string json)
    {
        using var doc = StrictJson.Parse(json);
        return Parse(doc.RootElement);
    }

    public static CompletionRequest Parse(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new RequestValidationException("", "the request must be a JSON object");
        foreach (var property in root.EnumerateObject())
            if (!Known.Contains(property.Name))
                throw new RequestValidationException(property.Name, $"unknown field '{property.Name}'");

        if (!root.TryGetProperty("prompt", out var promptElement))
            throw new RequestValidationException("prompt", "'prompt' is required");
        var prompt = ParsePrompt(promptElement);

        var n = OptionalInt(root, "n") ?? 1;
        if (n != 1) throw new RequestValidationException("n", "only n = 1 is supported");
        var stream = OptionalBool(root, "stream") ?? false;

        var request = new CompletionRequest
        {
            Id = OptionalString(root, "id"),
            Prompt = prompt,
            MaxTokens = OptionalInt(root, "max_tokens") ?? 16,
            Temperature = OptionalNumber(root, "temperature") ?? 1.0,
            TopP = OptionalNumber(root, "top_p") ?? 1.0,
            TopK = OptionalInt(root, "top_k") ?? 0,
            Seed = OptionalLong(root, "seed"),
            Stream = stream,
            Stop = ParseStop(root),
            Echo = OptionalBool(root, "echo") ?? false,
            Logprobs = OptionalInt(root, "logprobs"),
            IgnoreEos = OptionalBool(root, "ignore_eos") ?? false,
            User = OptionalString(root, "user"),
        };
        OptionalString(root, "model");
        Validate(request);
        return request;
    }

    public static void Validate(CompletionRequest r)
    {
        if (r.MaxTokens < 1) throw new RequestValidationException("max_tokens", $"max_tokens must be at least 1 (got {r.MaxTokens})");
        if (r.Temperature is < 0 or > 2 || double.IsNaN(r.Temperature))
            throw new RequestValidationException("temperature", $"temperature must be between 0 and 2 (got {r.Temperature})");
        if (r.TopP is <= 0 or > 1 || double.IsNaN(r.TopP))
            throw new RequestValidationException("top_p", $"top_p must be greater than 0 and at most 1 (got {r.TopP})");
        if (r.TopK < 0) throw new RequestValidationException("top_k", $"top_k must be 0 (off) or positive (got {r.TopK})");
        if (r.Logprobs is < 0 or > MaxLogprobs)
            throw new RequestValidationException("logprobs", $"logprobs must be between 0 and {MaxLogprobs} (got {r.Logprobs})");
        if (r.Stop.Count > MaxStopSequences)
            throw new RequestValidationException("stop", $"at most {MaxStopSequences} stop sequences are allowed");
        if (r.Stop.Any(string.IsNullOrEmpty)) throw new RequestValidationException("stop", "stop sequences must not be empty");
        if (r.Prompt.Text is { Length: 0 }) throw new RequestValidationException("prompt", "prompt must not be empty");
        if (r.Prompt.TokenIds is { Count: 0 }) throw new RequestValidationException("prompt", "prompt must not be empty");
    }

    private static Prompt ParsePrompt(JsonElement e)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.String:
                return Prompt.FromText(e.GetString()!);
            case JsonValueKind.Array:
                var ids = new List<int>();
                foreach (var item in e.EnumerateArray())
                {
                    if (item.ValueKind == JsonValueKind.Array)
                        throw new RequestValidationException("prompt", "a batch of prompts is not accepted here: send one prompt per request");
                    if (item.ValueKind == JsonValueKind.String)
                        throw new RequestValidationException("prompt", "an array of strings is not accepted here: send one prompt per request");
                    if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out var id) || id < 0)
                        throw new RequestValidationException("prompt", "prompt token ids must be non-negative integers");
                    ids.Add(id);
                }
                return Prompt.FromIds(ids);
            default:
                throw new RequestValidationException("prompt", "prompt must be a string or an array of token ids");
        }
    }

    private static IReadOnlyList<string> ParseStop(JsonElement root)
    {
        if (!root.TryGetProperty("stop", out var e) || e.ValueKind == JsonValueKind.Null) return [];
        if (e.ValueKind == JsonValueKind.String) return [e.GetString()!];
        if (e.ValueKind != JsonValueKind.Array) throw new RequestValidationException("stop", "stop must be a string or an array of strings");
        var list = new List<string>();
        foreach (var item in e.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String) throw new RequestValidationException("stop", "stop must be a string or an array of strings");
            list.Add(item.GetString()!);
        }
        return list;
    }

    private static JsonElement? Get(JsonElement root, string name) =>
        root.TryGetProperty(name, out var e) && e.ValueKind != JsonValueKind.Null ? e : null;

    private static string? OptionalString(JsonElement root, string name)
    {
        if (Get(root, name) is not { } e) return null;
        if (e.ValueKind != JsonValueKind.String) throw new RequestValidationException(name, $"{name} must be a string");
        return e.GetString();
    }

    private static bool? OptionalBool(JsonElement root, string name)
    {
        if (Get(root, name) is not { } e) return null;
        if (e.ValueKind is not (JsonValueKind.True or JsonValueKind.False)) throw new RequestValidationException(name, $"{name} must be a boolean");
        return e.GetBoolean();
    }

    private static double? OptionalNumber(JsonElement root, string name)
    {
        if (Get(root, name) is not { } e) return null;
        if (e.ValueKind != JsonValueKind.Number) throw new RequestValidationException(name, $"{name} must be a number");
        return e.GetDouble();
    }

    private static long? OptionalLong(JsonElement root, string name)
    {
        if (Get(root, name) is not { } e) return null;
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out var v)) throw new RequestValidationException(name, $"{name} must be an integer");
        return v;
    }

    private static int? OptionalInt(JsonElement root, string name)
    {
        if (Get(root, name) is not { } e) return null;
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out var v)) throw new RequestValidationException(name, $"{name} must be an integer");
        return v;
    }
}
