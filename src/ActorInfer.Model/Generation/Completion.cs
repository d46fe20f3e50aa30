using ActorInfer.Model.Config;

namespace ActorInfer.Model.Generation;

/// <summary>Text to ids and back, as the checkpoint's tokenizer does it.</summary>
public interface ITextCodec
{
    IReadOnlyList<int> Encode(string text);
    /// <summary>Decodes ids, skipping special tokens; invalid UTF-8 decodes to U+FFFD as Hugging Face does.</summary>
    string Decode(IReadOnlyList<int> ids);
}

/// <summary>What one request produced, in the shape `actorinfer generate` writes it.</summary>
public sealed record CompletionResult(
    string Id,
    IReadOnlyList<int> PromptIds,
    IReadOnlyList<int> OutputIds,
    string Text,
    string FinishReason,
    IReadOnlyList<float?>? PromptLogprobs,
    IReadOnlyList<float>? OutputLogprobs);

/// <summary>Turns requests into sequences (validated against the model) and finished sequences into results.</summary>
public sealed class CompletionFactory(ModelConfig config, ITextCodec? codec)
{
    public ModelConfig Config { get; } = config;

    /// <summary>Tokenizes and checks a request; throws <see cref="RequestValidationException"/> naming the field.</summary>
    public SequenceState Create(CompletionRequest request, long fallbackSeed)
    {
        CompletionRequestParser.Validate(request);
        IReadOnlyList<int> ids;
        if (request.Prompt.Text is { } text)
        {
            if (codec is null)
                throw new RequestValidationException("prompt", "this model has no tokenizer files: give the prompt as token ids");
            ids = codec.Encode(text);
        }
        else
        {
            ids = request.Prompt.TokenIds!;
            var bad = ids.FirstOrDefault(id => id >= Config.VocabSize, -1);
            if (bad >= 0)
                throw new RequestValidationException("prompt", $"token id {bad} is outside the vocabulary (size {Config.VocabSize})");
        }
        var context = Config.MaxPositionEmbeddings;
        if (ids.Count > context)
            throw new RequestValidationException("prompt", $"the prompt has {ids.Count} tokens, more than the model's context of {context}");
        if (ids.Count + request.MaxTokens > context)
            throw new RequestValidationException("max_tokens",
                $"the prompt ({ids.Count} tokens) plus max_tokens ({request.MaxTokens}) exceeds the model's context of {context}");
        return new SequenceState(request, ids, request.Seed ?? fallbackSeed, Config.EosTokenId);
    }

    public string Decode(IReadOnlyList<int> ids) => codec?.Decode(ids) ?? "";

    public CompletionResult Result(SequenceState s, string id)
    {
        if (!s.IsFinished) throw new InvalidOperationException($"sequence {id} has not finished");
        var text = Decode(s.OutputIds);
        if (s.StopCut is { } cut && cut <= text.Length) text = text[..cut];
        if (s.Request.Echo) text = (s.Request.Prompt.Text ?? Decode(s.PromptIds)) + text;
        var wantLogprobs = s.Request.Logprobs is not null;
        return new CompletionResult(id, s.PromptIds, s.OutputIds, text, s.FinishReason!,
            wantLogprobs && s.Request.Echo ? s.PromptLogprobs : null,
            wantLogprobs ? s.OutputLogprobs : null);
    }
}
