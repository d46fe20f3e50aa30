namespace ActorInfer.Model.Generation;

/// <summary>Why a sequence stopped, in the OpenAI API's words.</summary>
public static class FinishReason
{
    public const string Stop = "stop";
    public const string Length = "length";
}

/// <summary>
/// One sequence in flight: its request, tokenized prompt and what it has generated. Everything needed to
/// resume it elsewhere (prompt, generated ids, seed; the sampler is counter-based) is here.
/// </summary>
public sealed class SequenceState
{
    private readonly List<int> _output = [];
    private readonly List<float> _outputLogprobs = [];

    public SequenceState(CompletionRequest request, IReadOnlyList<int> promptIds, long seed, int eosTokenId)
    {
        Request = request;
        PromptIds = promptIds;
        Seed = seed;
        EosTokenId = eosTokenId;
    }

    public CompletionRequest Request { get; }
    public IReadOnlyList<int> PromptIds { get; }
    public long Seed { get; }
    public int EosTokenId { get; }
    public IReadOnlyList<int> OutputIds => _output;
    public IReadOnlyList<float> OutputLogprobs => _outputLogprobs;
    /// <summary>Log-probability of each prompt token given those before it; null for the first.</summary>
    public IReadOnlyList<float?>? PromptLogprobs { get; set; }
    public string? FinishReason { get; private set; }
    public bool IsFinished => FinishReason is not null;
    /// <summary>Characters of decoded output kept after a stop sequence cut it; null when not cut.</summary>
    public int? StopCut { get; private set; }

    /// <summary>Restores generated tokens from a checkpoint (the sequence then continues after them).</summary>
    public void Restore(IReadOnlyList<int> outputIds, IReadOnlyList<float> outputLogprobs)
    {
        _output.Clear();
        _output.AddRange(outputIds);
        _outputLogprobs.Clear();
        _outputLogprobs.AddRange(outputLogprobs);
    }

    /// <summary>Appends a chosen token and decides whether the sequence is done.</summary>
    /// <param name="decode">Decodes generated ids to text, for stop sequences.</param>
    public void Append(int token, float logprob, Func<IReadOnlyList<int>, string> decode)
    {
        if (IsFinished) throw new InvalidOperationException("the sequence has already finished");
        _output.Add(token);
        _outputLogprobs.Add(logprob);
        if (token == EosTokenId && !Request.IgnoreEos)
        {
            FinishReason = Generation.FinishReason.Stop;
            return;
        }
        if (Request.Stop.Count > 0)
        {
            var text = decode(_output);
            var cut = -1;
            foreach (var stop in Request.Stop)
            {
                var at = text.IndexOf(stop, StringComparison.Ordinal);
                if (at >= 0 && (cut < 0 || at < cut)) cut = at;
            }
            if (cut >= 0)
            {
                StopCut = cut;
                FinishReason = Generation.FinishReason.Stop;
                return;
            }
        }
        if (_output.Count >= Request.MaxTokens) FinishReason = Generation.FinishReason.Length;
    }

    /// <summary>Whether the sequence is done once one more token is appended, whatever that token (its length limit).</summary>
    public bool FinishesWithNextToken => IsFinished || _output.Count + 1 >= Request.MaxTokens;

    /// <summary>The token to sample next; its index is the draw counter of the sampler.</summary>
    public int Step => _output.Count;
}
