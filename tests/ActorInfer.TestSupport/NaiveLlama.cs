using ActorInfer.Model.Config;

namespace ActorInfer.TestSupport;

/// <summary>
/// An independent LLaMA-family forward pass in plain double-precision loops (one head at a time, rotary applied by
/// hand from its definition, no TorchSharp, no cache), so that the production code is checked against something that
/// shares none of its code paths. Supports the default, linear and llama3 rope scalings.
/// </summary>
public sealed class NaiveLlama(LlamaConfig c, IReadOnlyDictionary<string, float[]> w)
{
    private float[] W(string name) => w.TryGetValue(name, out var v) ? v : throw new KeyNotFoundException(name);
    private float[]? Maybe(string name) => w.TryGetValue(name, out var v) ? v : null;

    /// <summary>Logits [T][vocab] of an unpadded sequence.</summary>
    public double[][] Forward(IReadOnlyList<int> ids)
    {
        var h = c.HiddenSize;
        var embed = W("embed_tokens.weight");
        var x = ids.Select(id => Enumerable.Range(0, h).Select(k => (double)embed[id * h + k]).ToArray()).ToArray();
        for (var l = 0; l < c.NumHiddenLayers; l++) x = Layer(l, x);
        var head = Maybe("lm_head.weight") ?? embed;
        return x.Select(r => MatVec(head, null, RmsNorm(r, W("norm.weight")), c.VocabSize, h)).ToArray();
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

    /// <summary>The angle frequency of each pair of head dimensions (i, i + d/2), after the rope scaling.</summary>
    public double[] Frequencies()
    {
        var d = c.HeadDim;
        var rope = c.Rope;
        var result = new double[d / 2];
        for (var i = 0; i < d / 2; i++)
        {
            var f = 1.0 / Math.Pow(rope.Theta, 2.0 * i / d);
            if (rope.Type == "linear") f /= rope.Factor;
            if (rope.Type == "llama3")
            {
                var wavelength = 2 * Math.PI / f;
                var low = rope.OriginalMaxPositionEmbeddings / rope.LowFreqFactor;
                var high = rope.OriginalMaxPositionEmbeddings / rope.HighFreqFactor;
                if (wavelength > low) f /= rope.Factor;
                else if (wavelength >= high)
                {
                    var smooth = (rope.OriginalMaxPositionEmbeddings / wavelength - rope.LowFreqFactor) / (rope.HighFreqFactor - rope.LowFreqFactor);
                    f = (1 - smooth) * f / rope.Factor + smooth * f;
                }
            }
            result[i] = f;
        }
        return result;
    }

    private double[][] Layer(int l, double[][] x)
    {
        string N(string suffix) => $"layers.{l}.{suffix}";
        var t = x.Length;
        int h = c.HiddenSize, heads = c.NumAttentionHeads, kvHeads = c.NumKeyValueHeads, d = c.HeadDim;
        var input = x.Select(r => RmsNorm(r, W(N("input_layernorm.weight")))).ToArray();
        var q = input.Select(r => MatVec(W(N("self_attn.q_proj.weight")), Maybe(N("self_attn.q_proj.bias")), r, heads * d, h)).ToArray();
        var k = input.Select(r => MatVec(W(N("self_attn.k_proj.weight")), Maybe(N("self_attn.k_proj.bias")), r, kvHeads * d, h)).ToArray();
        var v = input.Select(r => MatVec(W(N("self_attn.v_proj.weight")), Maybe(N("self_attn.v_proj.bias")), r, kvHeads * d, h)).ToArray();
        var frequencies = Frequencies();
        for (var i = 0; i < t; i++)
        {
            for (var head = 0; head < heads; head++) Rotate(q[i], head * d, i, frequencies);
            for (var head = 0; head < kvHeads; head++) Rotate(k[i], head * d, i, frequencies);
        }
        var context = NaiveAttention.Causal(q, k, v, heads, kvHeads, d);
        var result = new double[t][];
        for (var i = 0; i < t; i++)
        {
            var attended = MatVec(W(N("self_attn.o_proj.weight")), Maybe(N("self_attn.o_proj.bias")), context[i], h, heads * d)
                .Zip(x[i], (a, b) => a + b).ToArray();
            var mlpIn = RmsNorm(attended, W(N("post_attention_layernorm.weight")));
            var f = c.IntermediateSize;
            var gate = MatVec(W(N("mlp.gate_proj.weight")), Maybe(N("mlp.gate_proj.bias")), mlpIn, f, h);
            var up = MatVec(W(N("mlp.up_proj.weight")), Maybe(N("mlp.up_proj.bias")), mlpIn, f, h);
            var inner = gate.Zip(up, (g, u) => g / (1 + Math.Exp(-g)) * u).ToArray();
            result[i] = MatVec(W(N("mlp.down_proj.weight")), Maybe(N("mlp.down_proj.bias")), inner, h, f)
                .Zip(attended, (a, b) => a + b).ToArray();
        }
        return result;
    }

    /// <summary>Turns each pair (m, m + d/2) of one head by position * frequency.</summary>
    private void Rotate(double[] vector, int offset, int position, double[] frequencies)
    {
        var half = c.HeadDim / 2;
        for (var m = 0; m < half; m++)
        {
            var angle = position * frequencies[m];
            var (a, b) = (vector[offset + m], vector[offset + m + half]);
            vector[offset + m] = a * Math.Cos(angle) - b * Math.Sin(angle);
            vector[offset + m + half] = b * Math.Cos(angle) + a * Math.Sin(angle);
        }
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

    private double[] RmsNorm(double[] x, float[] weight)
    {
        var inv = 1.0 / Math.Sqrt(x.Average(a => a * a) + c.RmsNormEps);
        return x.Select((a, k) => a * inv * weight[k]).ToArray();
    }
}
