namespace ActorInfer.Actors.Planner;

/// <summary>
/// The lengths a block is planned for: its sequences' contexts (prompt, and for a resumed sequence the tokens it had
/// generated) are at most <see cref="PromptLength"/> tokens, and each has at most <see cref="GenerationLength"/> tokens
/// left to generate. Requests of one bucket run in one block, so the planner reserves the cache they need, not the
/// model's whole context.
/// </summary>
public readonly record struct WorkloadBucket(int PromptLength, int GenerationLength)
{
    /// <summary>Cache capacity per sequence the bucket is planned for.</summary>
    public int Capacity => PromptLength + GenerationLength;

    public override string ToString() => $"prompt {PromptLength}, generate {GenerationLength}";
}

/// <summary>
/// How requests are grouped into buckets: lengths rounded up to powers of two (contexts from 16 tokens, generation
/// from 8), within the model's context; or, for comparison, one bucket of the whole context for every request.
/// </summary>
public sealed record BucketRule(int MaxContext, bool WholeContext = false)
{
    private const int SmallestPrompt = 16;
    private const int SmallestGeneration = 8;

    /// <summary>The bucket of a sequence with <paramref name="context"/> tokens to prefill and <paramref name="remaining"/> to generate.</summary>
    public WorkloadBucket For(int context, int remaining)
    {
        if (WholeContext) return Whole;
        var prompt = Math.Min(RoundUp(Math.Max(1, context), SmallestPrompt), Math.Max(1, MaxContext - 1));
        return new WorkloadBucket(prompt, Generation(prompt, remaining));
    }

    /// <summary>
    /// The bucket of a resumed sequence: its prompt's bucket widened by the tokens it had generated (rounded up to a
    /// multiple of 8), not its whole context rounded up to a power of two. A sequence dropped a few tokens past a 512-token
    /// prompt is planned for 520 tokens of context, not 1,024 (twice the cache it needs); the sequences of one dropped
    /// batch, resumed at the same step, share a bucket.
    /// </summary>
    public WorkloadBucket ForResumed(int prompt, int generated, int remaining)
    {
        if (WholeContext || generated <= 0) return For(prompt, remaining);
        var context = prompt + generated;
        var widened = For(prompt, remaining).PromptLength + (generated + SmallestGeneration - 1) / SmallestGeneration * SmallestGeneration;
        // Never past the power of two the whole context rounds to (the plain rule's bucket), nor past the model's context.
        var promptLength = Math.Min(Math.Max(widened, context), For(context, remaining).PromptLength);
        return new WorkloadBucket(promptLength, Generation(promptLength, remaining));
    }

    /// <summary>
    /// Every sequence planned as if it could fill the model's context: a prefill of the whole context but one token,
    /// and its cache to the end of the context.
    /// </summary>
    public WorkloadBucket Whole => new(Math.Max(1, MaxContext - 1), 1);

    /// <summary>
    /// Whether a sequence of this bucket may run in a block planned for <paramref name="planned"/>: its context and the
    /// tokens it has left are within the planned ones, so the block's padded prefill and its cache stay within the plan.
    /// </summary>
    public static bool Fits(WorkloadBucket bucket, WorkloadBucket planned) =>
        bucket.PromptLength <= planned.PromptLength && bucket.GenerationLength <= planned.GenerationLength;

    /// <summary>The tokens left to generate rounded up to a power of two (from 8), within the context beside the prompt's.</summary>
    private int Generation(int prompt, int remaining) =>
        Math.Max(1, Math.Min(RoundUp(Math.Max(1, remaining), SmallestGeneration), MaxContext - prompt));

    private static int RoundUp(int value, int smallest)
    {
        var rounded = smallest;
        while (rounded < value) rounded *= 2;
        return rounded;
    }
}
