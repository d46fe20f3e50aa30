using System.Text;
using System.Text.Json;

namespace ActorInfer.Model.Generation;

/// <summary>The JSONL line format of `actorinfer generate` output (also the batch-job result format).</summary>
public static class CompletionJson
{
    public static string ToJsonLine(CompletionResult r)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("id", r.Id);
            WriteInts(w, "prompt_ids", r.PromptIds);
            WriteInts(w, "output_ids", r.OutputIds);
            w.WriteString("text", r.Text);
            w.WriteString("finish_reason", r.FinishReason);
            if (r.PromptLogprobs is not null)
            {
                w.WriteStartArray("prompt_logprobs");
                foreach (var v in r.PromptLogprobs)
                    if (v is null) w.WriteNullValue();
                    else w.WriteNumberValue(v.Value);
                w.WriteEndArray();
            }
            if (r.OutputLogprobs is not null)
            {
                w.WriteStartArray("output_logprobs");
                foreach (var v in r.OutputLogprobs) w.WriteNumberValue(v);
                w.WriteEndArray();
            }
            w.WriteStartObject("usage");
            w.WriteNumber("prompt_tokens", r.PromptIds.Count);
            w.WriteNumber("completion_tokens", r.OutputIds.Count);
            w.WriteNumber("total_tokens", r.PromptIds.Count + r.OutputIds.Count);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>
    /// Whether a result line is one of <see cref="ErrorLine"/>'s: only those have a top-level "error" object, and inside JSON
    /// strings quotes are escaped, so the unescaped sequence can only be that key.
    /// </summary>
    public static bool IsErrorLine(string line) => line.Contains(",\"error\":{", StringComparison.Ordinal);

    /// <summary>The line written for an input line that could not be run (with --keep-going).</summary>
    public static string ErrorLine(string id, int lineNumber, string param, string message)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("id", id);
            w.WriteNumber("line", lineNumber);
            w.WriteStartObject("error");
            w.WriteString("message", message);
            w.WriteString("type", "invalid_request_error");
            if (param.Length > 0) w.WriteString("param", param);
            else w.WriteNull("param");
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void WriteInts(Utf8JsonWriter w, string name, IReadOnlyList<int> values)
    {
        w.WriteStartArray(name);
        foreach (var v in values) w.WriteNumberValue(v);
        w.WriteEndArray();
    }
}
