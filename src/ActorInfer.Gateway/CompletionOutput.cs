using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ActorInfer.Model.Generation;

namespace ActorInfer.Gateway;

/// <summary>
/// A job result line (the JSONL of `actorinfer generate`) as OpenAI's completion object, or as stream chunks.
/// Logprobs carry each token's chosen log-probability; <c>top_logprobs</c> is null (the engine keeps only the chosen one).
/// </summary>
public sealed class CompletionOutput(string id, string model, long created, CompletionFactory factory)
{
    /// <summary>The result line as a completion; an error line throws the error it holds (400 for invalid input).</summary>
    public JsonObject Completion(string resultLine)
    {
        var r = Read(resultLine);
        return new JsonObject
        {
            ["id"] = id,
            ["object"] = "text_completion",
            ["created"] = created,
            ["model"] = model,
            ["choices"] = new JsonArray(new JsonObject
            {
                ["text"] = r.Text,
                ["index"] = 0,
                ["logprobs"] = Logprobs(r, r.Echo ? r.PromptText : ""),
                ["finish_reason"] = r.FinishReason,
            }),
            ["usage"] = Usage(r),
        };
    }

    /// <summary>
    /// Chunks whose texts join to the completion's text, less what <see cref="LiveChunks"/> sent before the result: the
    /// echoed prompt first, then one chunk per generated token (a token that ends inside a multi-byte character waits for
    /// the next); the last carries the finish reason (and text held back for a stop sequence that did not come). A result
    /// that does not begin with what went out throws rather than send text twice.
    /// </summary>
    public IEnumerable<JsonObject> Chunks(string resultLine, bool includeUsage)
    {
        var r = Read(resultLine);
        var pieces = new List<(string Text, float? Logprob)>();
        var done = 0;
        var echoed = r.Echo && r.PromptText.Length > 0 && r.Text.StartsWith(r.PromptText, StringComparison.Ordinal);
        if (echoed)
        {
            if (!_echoSent) pieces.Add((r.PromptText, null));
            done = r.PromptText.Length;
        }
        var prefix = done;
        var sent = _sent.ToString();
        if (_echoSent && !echoed || !r.Text.AsSpan(prefix).StartsWith(sent, StringComparison.Ordinal) ||
            !r.OutputIds.Take(_live.Ids.Count).SequenceEqual(_live.Ids))
            throw new InvalidOperationException($"the result of {id} does not begin with the {_live.Ids.Count} tokens streamed before it");
        done += sent.Length;
        for (var i = _live.Ids.Count; i < r.OutputIds.Count; i++)
        {
            var last = i + 1 == r.OutputIds.Count;
            _live.Add(r.OutputIds[i]);
            if (_live.InCharacter && !last) continue;
            if (last) _live.Flush();
            var end = Math.Min(r.Text.Length, prefix + _live.Length);
            pieces.Add((end > done ? r.Text[done..end] : "", r.OutputLogprobs?[i]));
            done = Math.Max(done, end);
        }
        if (done < r.Text.Length) pieces.Add((r.Text[done..], null));
        if (pieces.Count == 0) pieces.Add(("", null));
        for (var i = 0; i < pieces.Count; i++)
            yield return Piece(pieces[i].Text, r.WantLogprobs ? pieces[i].Logprob : null, i == pieces.Count - 1 ? r.FinishReason : null);
        if (includeUsage)
        {
            var usage = Chunk(null);
            usage["usage"] = Usage(r);
            yield return usage;
        }
    }

    /// <summary>A chunk of <paramref name="text"/>, with its token's log-probability where one is reported.</summary>
    private JsonObject Piece(string text, float? logprob, string? finishReason) => Chunk(new JsonObject
    {
        ["text"] = text,
        ["index"] = 0,
        ["logprobs"] = logprob is { } lp
            ? new JsonObject
            {
                ["tokens"] = new JsonArray(text),
                ["token_logprobs"] = new JsonArray(lp),
                ["top_logprobs"] = null,
                ["text_offset"] = new JsonArray(0),
            }
            : null,
        ["finish_reason"] = finishReason,
    });

    // What went out before the result (LiveChunks): the echoed prompt, the ids and their text, and the part of that text
    // sent (the rest is held back for a stop sequence).
    private readonly IncrementalText _live = new(factory.Decode);
    private readonly StringBuilder _sent = new();
    private bool _echoSent;

    /// <summary>Whether a token went out before the result (<see cref="LiveChunks"/>).</summary>
    public bool SentTokens => _live.Ids.Count > 0;

    /// <summary>The request's stop sequences (set by the route): live text is held back while it could begin one.</summary>
    public IReadOnlyList<string> Stops { get; init; } = [];

    /// <summary>Whether the request asked for log-probabilities (set by the route): live chunks then carry each token's.</summary>
    public bool WantLogprobs { get; init; }

    /// <summary>
    /// How much of <paramref name="unsent"/> (the text of the ids chosen so far that has not gone out) is the result's for
    /// certain: all of it without stop sequences; else up to the first stop sequence in it (the sequence ends there), or
    /// short of the longest stop sequence's length less one (the text a stop sequence completed by a later token could
    /// begin with), never splitting a UTF-16 pair. The text sent before holds no stop sequence nor the start of one that
    /// ends after it (it was settled so), so the search needs only the unsent text.
    /// </summary>
    private int Settled(string unsent)
    {
        if (Stops.Count == 0) return unsent.Length;
        var end = unsent.Length - (Stops.Max(stop => stop.Length) - 1);
        foreach (var stop in Stops)
        {
            var at = unsent.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0) end = Math.Min(end, at);
        }
        end = Math.Max(0, end);
        return end > 0 && char.IsHighSurrogate(unsent[end - 1]) ? end - 1 : end;
    }

    /// <summary>
    /// Chunks of the output ids chosen so far, before the result (<paramref name="from"/>: the index of the first of
    /// <paramref name="ids"/>; <paramref name="logprobs"/>: theirs, where reported): the echoed prompt before the first, then
    /// one per token. Ids already sent are skipped (a resumed request's checkpointed ids come again), a gap ends them (the
    /// result brings the rest). A token's chunk carries the text it adds; none where it adds none (a special token), ends
    /// inside a multi-byte character (the next token's chunk then carries the character) or could begin a stop sequence.
    /// </summary>
    public IEnumerable<JsonObject> LiveChunks(int from, IReadOnlyList<int> ids, IReadOnlyList<float>? logprobs = null)
    {
        if (Echo && PromptText.Length > 0 && !_echoSent)
        {
            _echoSent = true;
            yield return Piece(PromptText, null, null);
        }
        for (var j = Math.Max(0, _live.Ids.Count - from); j < ids.Count; j++)
        {
            if (from + j != _live.Ids.Count) yield break;
            var piece = "";
            if (_live.Add(ids[j]).Length > 0)
            {
                var unsent = _live.From(_sent.Length);
                piece = unsent[..Settled(unsent)];
                _sent.Append(piece);
            }
            yield return Piece(piece, WantLogprobs && logprobs is not null && j < logprobs.Count ? logprobs[j] : null, null);
        }
    }

    private JsonObject Chunk(JsonObject? choice) => new()
    {
        ["id"] = id,
        ["object"] = "text_completion",
        ["created"] = created,
        ["model"] = model,
        ["choices"] = choice is null ? new JsonArray() : new JsonArray(choice),
    };

    private static JsonObject Usage(Result r) => new()
    {
        ["prompt_tokens"] = r.PromptIds.Count,
        ["completion_tokens"] = r.OutputIds.Count,
        ["total_tokens"] = r.PromptIds.Count + r.OutputIds.Count,
    };

    private JsonObject? Logprobs(Result r, string echoedPrompt)
    {
        if (!r.WantLogprobs) return null;
        var tokens = new JsonArray();
        var logprobs = new JsonArray();
        var offsets = new JsonArray();
        var offset = 0;
        void Add(int tokenId, float? logprob)
        {
            var text = factory.Decode([tokenId]);
            tokens.Add(text);
            logprobs.Add(logprob);
            offsets.Add(offset);
            offset += text.Length;
        }
        if (echoedPrompt.Length > 0 || r.Echo)
            for (var i = 0; i < r.PromptIds.Count; i++) Add(r.PromptIds[i], r.PromptLogprobs is { } p && i < p.Count ? p[i] : null);
        for (var i = 0; i < r.OutputIds.Count; i++) Add(r.OutputIds[i], r.OutputLogprobs is { } o && i < o.Count ? o[i] : null);
        return new JsonObject { ["tokens"] = tokens, ["token_logprobs"] = logprobs, ["top_logprobs"] = null, ["text_offset"] = offsets };
    }

    private sealed record Result(string Text, string FinishReason, IReadOnlyList<int> PromptIds, IReadOnlyList<int> OutputIds,
        IReadOnlyList<float?>? PromptLogprobs, IReadOnlyList<float>? OutputLogprobs, bool WantLogprobs, bool Echo, string PromptText);

    private Result Read(string line)
    {
        using var doc = JsonDocument.Parse(line);
        var root = doc.RootElement;
        if (root.TryGetProperty("error", out var error))
        {
            var message = error.GetProperty("message").GetString() ?? "the request failed";
            var param = error.TryGetProperty("param", out var p) && p.ValueKind == JsonValueKind.String ? p.GetString() : null;
            if (message.Contains("cancelled", StringComparison.Ordinal))
                throw ApiError.Conflict(null, message, "cancelled");
            // The scheduler validates again when it opens a block; an invalid request is the caller's to fix.
            if (param is not null) throw ApiError.BadRequest(param, message);
            throw new InvalidOperationException($"the completion failed: {message}");
        }
        var promptIds = Ints(root.GetProperty("prompt_ids"));
        var outputIds = Ints(root.GetProperty("output_ids"));
        var promptLogprobs = root.TryGetProperty("prompt_logprobs", out var pl)
            ? pl.EnumerateArray().Select(v => v.ValueKind == JsonValueKind.Null ? (float?)null : v.GetSingle()).ToArray()
            : null;
        var outputLogprobs = root.TryGetProperty("output_logprobs", out var ol) ? ol.EnumerateArray().Select(v => v.GetSingle()).ToArray() : null;
        return new Result(root.GetProperty("text").GetString() ?? "", root.GetProperty("finish_reason").GetString() ?? "stop",
            promptIds, outputIds, promptLogprobs, outputLogprobs, outputLogprobs is not null, Echo, PromptText);
    }

    /// <summary>Whether the request echoes its prompt, and the prompt text as echoed (set by the route).</summary>
    public bool Echo { get; init; }
    public string PromptText { get; init; } = "";

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(v => v.GetInt32()).ToArray();
}
