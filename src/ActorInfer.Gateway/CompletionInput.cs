using System.Text.Json;
using System.Text.Json.Nodes;
using ActorInfer.Model.Generation;

namespace ActorInfer.Gateway;

/// <summary>
/// A <c>POST /v1/completions</c> body, checked: the shared strict parser (every field typed and ranged, unknown
/// fields refused) after two HTTP-only rules. A prompt given as an array of one string is that string; an array of
/// several prompts is refused (n and prompt batches are not supported: send one request per prompt, or a job).
/// A <c>model</c> other than the served one is 404 <c>model_not_found</c>, as OpenAI and vLLM answer.
/// </summary>
public sealed record CompletionInput(string Json, CompletionRequest Request, bool Stream, bool IncludeUsage)
{
    /// <summary>The served model the request is for (the one it names, or the default).</summary>
    public string Model { get; init; } = "";

    public static CompletionInput Parse(byte[] body, string servedModel) => Parse(body, [servedModel]);

    /// <param name="servedModels">The models the node serves, the default first. With several, the persisted request
    /// always names its model (the node hands it to that model's scheduler).</param>
    public static CompletionInput Parse(byte[] body, IReadOnlyList<string> servedModels)
    {
        var servedModel = servedModels[0];
        // Checked strictly first (UTF-8, no key twice, no lone surrogate), so that nothing below meets a string it cannot read.
        JsonNode? root;
        try
        {
            using (StrictJson.Parse(body)) { }
            root = JsonNode.Parse(body, documentOptions: new JsonDocumentOptions { AllowTrailingCommas = false, MaxDepth = StrictJson.MaxDepth });
        }
        catch (RequestValidationException ex)
        {
            throw ApiError.BadRequest(ex.Param, ex.Message, string.IsNullOrEmpty(ex.Param) ? "invalid_json" : null);
        }
        if (root is not JsonObject obj) throw ApiError.BadRequest(null, "the body must be a JSON object", "invalid_json");
        if (obj.ContainsKey("id")) throw ApiError.BadRequest("id", "unknown field 'id' (the server names completions)");

        if (obj["prompt"] is JsonArray prompts && prompts.Count > 0 && prompts.All(p => p?.GetValueKind() == JsonValueKind.String))
        {
            if (prompts.Count > 1)
                throw ApiError.BadRequest("prompt", $"a batch of {prompts.Count} prompts is not supported: send one prompt per request, or submit a job");
            obj["prompt"] = prompts[0]!.GetValue<string>();
        }
        var chosen = servedModel;
        if (obj["model"] is { } model)
        {
            if (model.GetValueKind() != JsonValueKind.String) throw ApiError.BadRequest("model", "model must be a string");
            chosen = model.GetValue<string>();
            if (!servedModels.Contains(chosen)) throw UnknownModel.Error(chosen, servedModels);
        }
        else if (servedModels.Count > 1)
            obj["model"] = chosen;
        var includeUsage = false;
        if (obj["stream_options"] is { } options)
        {
            if (options is not JsonObject o) throw ApiError.BadRequest("stream_options", "stream_options must be an object");
            foreach (var (key, value) in o)
            {
                if (key != "include_usage") throw ApiError.BadRequest("stream_options", $"unknown field 'stream_options.{key}'");
                if (value?.GetValueKind() is not (JsonValueKind.True or JsonValueKind.False))
                    throw ApiError.BadRequest("stream_options", "stream_options.include_usage must be a boolean");
                includeUsage = value.GetValue<bool>();
            }
        }

        var json = obj.ToJsonString();
        CompletionRequest request;
        try
        {
            request = CompletionRequestParser.Parse(json);
        }
        catch (RequestValidationException ex)
        {
            throw ApiError.BadRequest(ex.Param, ex.Message);
        }
        var stream = obj["stream"]?.GetValueKind() == JsonValueKind.True;
        if (includeUsage && !stream) throw ApiError.BadRequest("stream_options", "stream_options is only allowed with stream = true");
        return new CompletionInput(json, request, stream, includeUsage) { Model = chosen };
    }
}
