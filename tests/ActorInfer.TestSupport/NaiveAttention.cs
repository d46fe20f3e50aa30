namespace ActorInfer.TestSupport;

/// <summary>Causal softmax attention as plain loops over heads and positions, for the naive reference models.</summary>
public static class NaiveAttention
{
    /// <summary>
    /// Each position's context over itself and the positions before it, [t][heads * d]. Query heads share key/value heads
    /// in consecutive groups of heads / kvHeads (one each when they are equal).
    /// </summary>
    public static double[][] Causal(double[][] q, double[][] k, double[][] v, int heads, int kvHeads, int d)
    {
        var t = q.Length;
        var context = new double[t][];
        for (var i = 0; i < t; i++) context[i] = new double[heads * d];
        var scale = 1.0 / Math.Sqrt(d);
        for (var head = 0; head < heads; head++)
        {
            var o = head * d;
            var kvo = head / (heads / kvHeads) * d;
            for (var i = 0; i < t; i++)
            {
                var scores = new double[i + 1];
                for (var j = 0; j <= i; j++)
                {
                    double dot = 0;
                    for (var m = 0; m < d; m++) dot += q[i][o + m] * k[j][kvo + m];
                    scores[j] = dot * scale;
                }
                var max = scores.Max();
                var weights = scores.Select(s => Math.Exp(s - max)).ToArray();
                var total = weights.Sum();
                for (var j = 0; j <= i; j++)
                    for (var m = 0; m < d; m++)
                        context[i][o + m] += weights[j] / total * v[j][kvo + m];
            }
        }
        return context;
    }
}
