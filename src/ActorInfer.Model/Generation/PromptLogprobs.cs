using ActorInfer.Model.Layers;
using static TorchSharp.torch;

namespace ActorInfer.Model.Generation;

/// <summary>The log-probability of each prompt token given the tokens before it (null for the first).</summary>
public static class PromptLogprobs
{
    /// <param name="logits">[B, S, vocab] over the left-padded prompt.</param>
    public static void Fill(Tensor logits, IReadOnlyList<SequenceState> sequences, BatchLayout layout)
    {
        using var scope = NewDisposeScope();
        var logprobs = logits.to_type(ScalarType.Float32).log_softmax(-1);
        for (var b = 0; b < sequences.Count; b++)
        {
            var s = sequences[b];
            if (!(s.Request.Echo && s.Request.Logprobs is not null) || s.PromptLogprobs is not null) continue;
            var prompt = s.PromptIds;
            var pad = layout.PadCount(b);
            var values = new float?[prompt.Count];
            if (prompt.Count > 1)
            {
                // Position pad + j - 1 predicts prompt token j.
                var rows = logprobs[b].narrow(0, pad, prompt.Count - 1);
                var targets = tensor(prompt.Skip(1).Select(t => (long)t).ToArray(), [prompt.Count - 1, 1], dtype: ScalarType.Int64)
                    .to(rows.device);
                var picked = rows.gather(1, targets).cpu().data<float>().ToArray();
                for (var j = 1; j < prompt.Count; j++) values[j] = picked[j - 1];
            }
            s.PromptLogprobs = values;
        }
    }
}
