using static TorchSharp.torch;

namespace ActorInfer.Model.Generation;

/// <summary>
/// Turns the last position's logits of a batch into one new token per unfinished sequence. Greedy choices and
/// log-probabilities are computed on the logits' device; only sampled rows travel to the host whole.
/// </summary>
public static class TokenChooser
{
    /// <param name="lastLogits">[B, vocab], row b for <paramref name="sequences"/>[b].</param>
    public static void ChooseAndAppend(Tensor lastLogits, IReadOnlyList<SequenceState> sequences, Func<IReadOnlyList<int>, string> decode)
    {
        using var scope = NewDisposeScope();
        var logits = lastLogits.to_type(ScalarType.Float32);
        var logprobs = logits.log_softmax(-1);
        var greedy = logits.argmax(-1).cpu();
        var greedyIds = greedy.data<long>().ToArray();
        var chosen = new long[sequences.Count];
        for (var b = 0; b < sequences.Count; b++)
        {
            var s = sequences[b];
            if (s.IsFinished || s.Request.IsGreedy)
            {
                chosen[b] = greedyIds[b];
                continue;
            }
            var row = logits[b].cpu().data<float>().ToArray();
            chosen[b] = Sampler.Sample(row, s.Request.Temperature, s.Request.TopK, s.Request.TopP, s.Seed, s.Step);
        }
        var index = tensor(chosen, [sequences.Count, 1], dtype: ScalarType.Int64).to(logprobs.device);
        var picked = logprobs.gather(1, index).cpu().data<float>().ToArray();
        for (var b = 0; b < sequences.Count; b++)
            if (!sequences[b].IsFinished)
                sequences[b].Append((int)chosen[b], picked[b], decode);
    }
}
