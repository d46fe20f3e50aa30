namespace ActorInfer.Model.Generation;

/// <summary>
/// Chooses the next token from one row of logits. Randomness is counter-based: the uniform draw for a
/// sequence's k-th new token depends only on (seed, k), so a sequence that is checkpointed after k tokens and
/// resumed elsewhere draws exactly what it would have drawn (no generator state to save beyond k).
/// </summary>
public static class Sampler
{
    /// <summary>Samples with temperature, top-k and top-p (nucleus) cuts, as Hugging Face's warpers order them.</summary>
    public static int Sample(ReadOnlySpan<float> logits, double temperature, int topK, double topP, long seed, int step)
    {
        if (temperature <= 0) return ArgMax(logits);
        var n = logits.Length;
        var order = new int[n];
        var scaled = new double[n];
        for (var i = 0; i < n; i++)
        {
            order[i] = i;
            scaled[i] = logits[i] / temperature;
        }
        // Descending by logit, ties by lower id, so the draw is deterministic.
        Array.Sort(order, (a, b) => scaled[b] != scaled[a] ? scaled[b].CompareTo(scaled[a]) : a.CompareTo(b));
        var keep = topK > 0 ? Math.Min(topK, n) : n;

        var max = scaled[order[0]];
        var probs = new double[keep];
        double total = 0;
        for (var i = 0; i < keep; i++)
        {
            probs[i] = Math.Exp(scaled[order[i]] - max);
            total += probs[i];
        }
        if (topP < 1.0)
        {
            double cumulative = 0;
            var cut = keep;
            for (var i = 0; i < keep; i++)
            {
                cumulative += probs[i] / total;
                if (cumulative >= topP)
                {
                    cut = i + 1;
                    break;
                }
            }
            keep = cut;
            total = 0;
            for (var i = 0; i < keep; i++) total += probs[i];
        }

        var u = Uniform(seed, step) * total;
        double acc = 0;
        for (var i = 0; i < keep; i++)
        {
            acc += probs[i];
            if (u < acc) return order[i];
        }
        return order[keep - 1];
    }

    /// <summary>Index of the largest logit; the first on ties, as torch.argmax.</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        var best = 0;
        for (var i = 1; i < logits.Length; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }

    /// <summary>A uniform draw in [0, 1) from (seed, step) by SplitMix64.</summary>
    public static double Uniform(long seed, int step)
    {
        var z = unchecked((ulong)seed + 0x9E3779B97F4A7C15UL * (ulong)(step + 1));
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        z ^= z >> 31;
        return (z >> 11) * (1.0 / (1UL << 53));
    }
}
