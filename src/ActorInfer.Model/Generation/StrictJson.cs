using System.Text.Json;
using System.Text.Unicode;

namespace ActorInfer.Model.Generation;

/// <summary>
/// Parses a request body as JSON that every reader of it agrees on: UTF-8 throughout, no object with the same key
/// twice (readers differ on which one wins), and no string, key or value, that is not Unicode text (a lone UTF-16
/// surrogate such as <c>"\ud800"</c> is valid JSON syntax but no string can hold it). Each refusal names the
/// top-level field it is in, or is unnamed when the body as a whole is at fault.
/// </summary>
public static class StrictJson
{
    /// <summary>Nesting deeper than any request needs is refused before it costs stack (the reader's default is 64).</summary>
    public const int MaxDepth = 32;

    private static readonly JsonDocumentOptions Options = new() { MaxDepth = MaxDepth };

    public static JsonDocument Parse(ReadOnlyMemory<byte> utf8)
    {
        if (!Utf8.IsValid(utf8.Span)) throw new RequestValidationException("body", "the body is not valid UTF-8");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(utf8, Options);
        }
        catch (JsonException ex)
        {
            throw new RequestValidationException("", $"the body is not valid JSON: {ex.Message}");
        }
        try
        {
            Check(doc.RootElement, null);
        }
        catch
        {
            doc.Dispose();
            throw;
        }
        return doc;
    }

    public static JsonDocument Parse(string json)
    {
        // A .NET string can hold a lone surrogate itself (from a caller, not from bytes): its UTF-8 would not round-trip.
        if (!IsText(json)) throw new RequestValidationException("", "the body holds a lone UTF-16 surrogate");
        return Parse(System.Text.Encoding.UTF8.GetBytes(json));
    }

    /// <param name="field">The top-level field the element is in; null for the root.</param>
    private static void Check(JsonElement element, string? field)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var seen = new HashSet<string>(StringComparer.Ordinal);
                foreach (var property in element.EnumerateObject())
                {
                    var name = Text(() => property.Name, field);
                    var owner = field ?? name;
                    if (!seen.Add(name))
                        throw new RequestValidationException(owner, field is null ? $"the field '{name}' is given twice" : $"'{name}' is given twice in '{field}'");
                    Check(property.Value, owner);
                }
                break;
            case JsonValueKind.Array:
                foreach (var item in element.EnumerateArray()) Check(item, field);
                break;
            case JsonValueKind.String:
                Text(element.GetString, field);
                break;
        }
    }

    private static string Text(Func<string?> read, string? field)
    {
        string? text;
        try
        {
            text = read();
        }
        catch (InvalidOperationException)
        {
            // The reader refuses to unescape a lone surrogate into a string.
            throw new RequestValidationException(field ?? "", $"{(field is null ? "a key" : $"'{field}'")} holds a lone UTF-16 surrogate (such as \\ud800): not Unicode text");
        }
        if (text is not null && !IsText(text))
            throw new RequestValidationException(field ?? "", $"{(field is null ? "a key" : $"'{field}'")} holds a lone UTF-16 surrogate (such as \\ud800): not Unicode text");
        return text ?? "";
    }

    private static bool IsText(string s)
    {
        for (var i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]))
            {
                if (i + 1 >= s.Length || !char.IsLowSurrogate(s[i + 1])) return false;
                i++;
            }
            else if (char.IsLowSurrogate(s[i])) return false;
        }
        return true;
    }
}
