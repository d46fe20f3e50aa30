namespace ActorInfer.Model.Generation;

/// <summary>A prompt as text (tokenized with the checkpoint's tokenizer) or as token ids (used as given).</summary>
public sealed record Prompt(string? Text, IReadOnlyList<int>? TokenIds)
{
    public static Prompt FromText(string text) => new(text, null);
    public static Prompt FromIds(IReadOnlyList<int> ids) => new(null, ids);
}

/// <summary>
/// One completion request, in the fields of the OpenAI completions API (plus <c>top_k</c> and <c>ignore_eos</c>
/// as vLLM has them). Defaults are OpenAI's.
/// </summary>
public sealed record CompletionRequest
{
    public string? Id { get; init; }
    public required Prompt Prompt { get; init; }
    public int MaxTokens { get; init; } = 16;
    /// <summary>0 means greedy decoding.</summary>
    public double Temperature { get; init; } = 1.0;
    public double TopP { get; init; } = 1.0;
    /// <summary>0 or less: no top-k cut.</summary>
    public int TopK { get; init; }
    public long? Seed { get; init; }
    public IReadOnlyList<string> Stop { get; init; } = [];
    public bool Echo { get; init; }
    /// <summary>When set, the log-probability of each chosen token is reported (and of each prompt token with echo).</summary>
    public int? Logprobs { get; init; }
    public bool IgnoreEos { get; init; }
    /// <summary>The caller reads tokens as they are chosen (server-sent events): a node reports each step's tokens of it.</summary>
    public bool Stream { get; init; }
    public string? User { get; init; }

    public bool IsGreedy => Temperature == 0.0;
}

/// <summary>A request that fails validation; <see cref="Param"/> names the offending field.</summary>
public sealed class RequestValidationException(string param, string message) : Exception(message)
{
    public string Param { get; } = param;
}
