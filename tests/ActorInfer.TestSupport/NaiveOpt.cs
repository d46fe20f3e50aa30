using ActorInfer.Model.Config;
using S = ActorInfer.Model.Config.OptWeightNames.LayerSuffix;

namespace ActorInfer.TestSupport;

/// <summary>
/// An independent OPT forward pass in plain double-precision loops (one head at a time, no TorchSharp, no cache),
/// written from the architecture's definition so that the production code is checked against something that
/// shares none of its code paths.
/// </summary>
public sealed class NaiveOpt(OptConfig c, IReadOnlyDictionary<string, float[]> w)
{
    private float[] W(string name) => w.TryGetValue(name, out var v) ? v : throw new KeyNotFoundException(name);
    private float[]? Maybe(string name) => w.TryGetValue(name, out var v) ? v : null;

    /// <summary>Logits [T][vocab] of an unpadded sequence.</summary>
    public double[][] Forward(IReadOnlyList<int> ids)
    {
        var t = ids.Count;
        var h = c.HiddenSize;
        var e = c.WordEmbedProjDim;
        var embed = W(OptWeightNames.EmbedTokens);
        var pos = W(OptWeightNames.EmbedPositions);
        var x = new double[t][];
        for (var i = 0; i < t; i++)
        {
            var tok = new double[e];
            for (var k = 0; k < e; k++) tok[k] = embed[ids[i] * e + k];
            var projected = c.HasProjection ? MatVec(W(OptWeightNames.ProjectIn), null, tok, h, e) : tok;
            x[i] = new double[h];
            for (var k = 0; k < h; k++) x[i][k] = projected[k] + pos[(i + OptConfig.PositionOffset) * h + k];
        }
        for (var l = 0; l < c.NumHiddenLayers; l++) x = Layer(l, x);
        var logits = new double[t][];
        for (var i = 0; i < t; i++)
        {
            var y = x[i];
            if (c.HasFinalLayerNorm) y = Norm(y, Maybe(OptWeightNames.FinalLayerNormWeight), Maybe(OptWeightNames.FinalLayerNormBias));
            if (c.HasProjection) y = MatVec(W(OptWeightNames.ProjectOut), null, y, e, h);
            logits[i] = MatVec(embed, null, y, c.VocabSize, e);
        }
        return logits;
    }

    /// <summary>Greedy continuation of <paramref name="ids"/>, recomputing the whole sequence every step.</summary>
    public List<int> Greedy(IReadOnlyList<int> ids, int count)
    {
        var seq = ids.ToList();
        var output = new List<int>();
        for (var s = 0; s < count; s++)
        {
            var last = Forward(seq)[^1];
            var best = 0;
            for (var v = 1; v < last.Length; v++) if (last[v] > last[best]) best = v;
            output.Add(best);
            seq.Add(best);
        }
        return output;
    }

    public static double[] LogSoftmax(double[] row)
    {
        var max = row.Max();
        var sum = row.Sum(v => Math.Exp(v - max));
        var log = Math.Log(sum) + max;
        return row.Select(v => v - log).ToArray();
    }

    private double[][] Layer(int l, double[][] x)
    {
        string N(string suffix) => OptWeightNames.Layer(l, suffix);
        var t = x.Length;
        var h = c.HiddenSize;
        var heads = c.NumAttentionHeads;
        var d = c.HeadDim;
        var pre = c.DoLayerNormBefore;

        var input = x.Select(r => pre ? Norm(r, Maybe(N(S.AttnLayerNormWeight)), Maybe(N(S.AttnLayerNormBias))) : r).ToArray();
        var q = input.Select(r => MatVec(W(N(S.QWeight)), Maybe(N(S.QBias)), r, h, h)).ToArray();
        var k = input.Select(r => MatVec(W(N(S.KWeight)), Maybe(N(S.KBias)), r, h, h)).ToArray();
        var v = input.Select(r => MatVec(W(N(S.VWeight)), Maybe(N(S.VBias)), r, h, h)).ToArray();
        var context = NaiveAttention.Causal(q, k, v, heads, heads, d);
        var after = new double[t][];
        for (var i = 0; i < t; i++)
        {
            var projected = MatVec(W(N(S.OutWeight)), Maybe(N(S.OutBias)), context[i], h, h);
            var sum = projected.Zip(x[i], (a, b) => a + b).ToArray();
            after[i] = pre ? sum : Norm(sum, Maybe(N(S.AttnLayerNormWeight)), Maybe(N(S.AttnLayerNormBias)));
        }
        var result = new double[t][];
        for (var i = 0; i < t; i++)
        {
            var ffnIn = pre ? Norm(after[i], Maybe(N(S.FfnLayerNormWeight)), Maybe(N(S.FfnLayerNormBias))) : after[i];
            var up = MatVec(W(N(S.Fc1Weight)), Maybe(N(S.Fc1Bias)), ffnIn, c.FfnDim, h).Select(a => Math.Max(a, 0)).ToArray();
            var down = MatVec(W(N(S.Fc2Weight)), Maybe(N(S.Fc2Bias)), up, h, c.FfnDim);
            var sum = down.Zip(after[i], (a, b) => a + b).ToArray();
            result[i] = pre ? sum : Norm(sum, Maybe(N(S.FfnLayerNormWeight)), Maybe(N(S.FfnLayerNormBias)));
        }
        return result;
    }

    private static double[] MatVec(float[] weight, float[]? bias, double[] x, int rows, int cols)
    {
        var y = new double[rows];
        for (var r = 0; r < rows; r++)
        {
            double acc = bias?[r] ?? 0;
            var o = r * cols;
            for (var k = 0; k < cols; k++) acc += weight[o + k] * x[k];
            y[r] = acc;
        }
        return y;
    }

    private static double[] Norm(double[] x, float[]? weight, float[]? bias)
    {
        var mean = x.Average();
        var variance = x.Average(a => (a - mean) * (a - mean));
        var inv = 1.0 / Math.Sqrt(variance + 1e-5);
        var y = new double[x.Length];
        for (var k = 0; k < x.Length; k++) y[k] = (x[k] - mean) * inv * (weight?[k] ?? 1) + (bias?[k] ?? 0);
        return y;
    }
}
