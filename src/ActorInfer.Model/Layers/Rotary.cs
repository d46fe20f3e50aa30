using ActorInfer.Model.Config;
using static TorchSharp.torch;

namespace ActorInfer.Model.Layers;

/// <summary>
/// Rotary position embeddings as Hugging Face computes them: inverse frequencies in single precision (scaled by the
/// rope type) and rounded to the checkpoint's dtype, angles position * frequency, each half of a head rotated against
/// the other. The rounding is transformers' own: its frequencies are a buffer that is cast with the model when a
/// checkpoint loads in its stored dtype, and the logits of a float16 checkpoint run in float32 depend on it (by up to
/// 1e-3 over a few positions).
/// </summary>
public sealed class Rotary
{
    private readonly float[] _inverseFrequencies;

    /// <param name="storedAs">The checkpoint's dtype: the frequencies are rounded to it.</param>
    public Rotary(RopeSettings rope, int headDim, ScalarType storedAs)
    {
        if (headDim % 2 != 0) throw new ArgumentException($"rotary embeddings need an even head_dim (got {headDim})", nameof(headDim));
        using var scope = NewDisposeScope();
        // base ** (arange(0, d, 2) / d) in float32, as transformers computes it, so the angles agree to the last bit.
        var exponents = arange(0, headDim, 2, dtype: ScalarType.Int64).to(ScalarType.Float32).div(headDim);
        var frequencies = pow(tensor((float)rope.Theta), exponents).reciprocal();
        _inverseFrequencies = Scale(frequencies, rope).to(storedAs).to(ScalarType.Float32).data<float>().ToArray();
    }

    /// <summary>The inverse frequencies, one per pair of head dimensions.</summary>
    public IReadOnlyList<float> InverseFrequencies => _inverseFrequencies;

    /// <summary>x [B, heads, T, d] rotated by <paramref name="positions"/> [B, T].</summary>
    public Tensor Apply(Tensor x, Tensor positions)
    {
        using var angles = Angles(positions, x.dtype);
        return Apply(x, angles);
    }

    /// <summary>
    /// The cosines and sines of <paramref name="positions"/> [B, T] in <paramref name="dtype"/>, outside any dispose scope (the
    /// caller disposes them): one step's are the same for every layer, and for queries and keys.
    /// </summary>
    public RotaryAngles Angles(Tensor positions, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var frequencies = tensor(_inverseFrequencies).to(positions.device);
        var angles = positions.to(ScalarType.Float32).unsqueeze(-1).mul(frequencies);
        var both = cat([angles, angles], -1).unsqueeze(1);
        var cos = both.cos().to(dtype);
        var sin = both.sin().to(dtype);
        return new RotaryAngles(cos.DetachFromDisposeScope(), sin.DetachFromDisposeScope());
    }

    private readonly Dictionary<(TorchSharp.DeviceType Device, int Index, ScalarType Type), (Tensor Cos, Tensor Sin)> _tables = [];
    private readonly Lock _tablesGate = new();

    /// <summary>Positions per call when a table is built: each position's angles are formed in the same call whatever the table's size.</summary>
    public const int TableChunk = 64;

    /// <summary>
    /// As <see cref="Angles"/>, but looked up in a table of every position below <paramref name="positionCount"/>, built once per
    /// device and type in calls of <see cref="TableChunk"/> positions: a position's cosines and sines then have the same bits
    /// in any batch (the CPU's vectorized cosine rounds the elements at a call's tail by another routine). For batch-invariant
    /// models; the table's size is the model's context.
    /// </summary>
    public RotaryAngles TabledAngles(Tensor positions, ScalarType dtype, int positionCount)
    {
        var key = (positions.device_type, positions.device_index, dtype);
        (Tensor Cos, Tensor Sin) table;
        lock (_tablesGate)
        {
            if (!_tables.TryGetValue(key, out table))
            {
                var cos = new List<Tensor>();
                var sin = new List<Tensor>();
                for (var first = 0; first < positionCount; first += TableChunk)
                {
                    using var chunk = arange(first, Math.Min(positionCount, first + TableChunk), dtype: ScalarType.Int64, device: positions.device);
                    using var rows = chunk.unsqueeze(0);
                    using var angles = Angles(rows, dtype);
                    cos.Add(angles.Cos.reshape(-1, angles.Cos.size(-1)));
                    sin.Add(angles.Sin.reshape(-1, angles.Sin.size(-1)));
                }
                table = (cat(cos, 0).DetachFromDisposeScope(), cat(sin, 0).DetachFromDisposeScope());
                foreach (var part in cos.Concat(sin)) part.Dispose();
                _tables[key] = table;
            }
        }
        // A pad's position (-1) takes position 0's angles: nothing attends to a pad.
        using var flat = positions.reshape(-1).clamp_min(0);
        using var c = table.Cos.index_select(0, flat);
        using var s = table.Sin.index_select(0, flat);
        long batch = positions.size(0), tokens = positions.size(1);
        return new RotaryAngles(c.view(batch, 1, tokens, -1).DetachFromDisposeScope(), s.view(batch, 1, tokens, -1).DetachFromDisposeScope());
    }

    /// <summary>x [B, heads, T, d] rotated by the angles of its positions.</summary>
    public static Tensor Apply(Tensor x, RotaryAngles angles)
    {
        using var scope = NewDisposeScope();
        var half = x.size(-1) / 2;
        var rotated = cat([x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)], -1);
        // In place on the temporaries: the same roundings as new tensors, fewer native calls.
        rotated.mul_(angles.Sin);
        return x.mul(angles.Cos).add_(rotated, One).MoveToOuterDisposeScope();
    }

    // add_(t) makes a new Scalar for its alpha on every call: one shared alpha of 1 instead.
    private static readonly TorchSharp.Scalar One = TorchSharp.ScalarExtensionMethods.ToScalar(1);

    private static Tensor Scale(Tensor frequencies, RopeSettings rope)
    {
        switch (rope.Type)
        {
            case "default":
                return frequencies;
            case "linear":
                return frequencies.div(rope.Factor);
            case "llama3":
            {
                // Long wavelengths are divided by the factor, short ones kept, those between blended smoothly.
                double old = rope.OriginalMaxPositionEmbeddings;
                var lowWavelength = old / rope.LowFreqFactor;
                var highWavelength = old / rope.HighFreqFactor;
                var wavelength = full_like(frequencies, 2 * Math.PI).div(frequencies);
                var scaled = where(wavelength.gt(lowWavelength), frequencies.div(rope.Factor), frequencies);
                var smooth = full_like(wavelength, old).div(wavelength).sub(rope.LowFreqFactor).div(rope.HighFreqFactor - rope.LowFreqFactor);
                var blended = smooth.neg().add(1).mul(scaled).div(rope.Factor).add(smooth.mul(scaled));
                var medium = wavelength.lt(highWavelength).logical_not().logical_and(wavelength.gt(lowWavelength).logical_not());
                return where(medium, blended, scaled);
            }
            default:
                throw new ArgumentException($"rope type '{rope.Type}' is not supported (default, linear and llama3 are)");
        }
    }
}

/// <summary>The cosines and sines [B, 1, T, d] that turn queries and keys by their positions; owned by whoever asked for them.</summary>
public sealed class RotaryAngles(Tensor cos, Tensor sin) : IDisposable
{
    public Tensor Cos { get; } = cos;
    public Tensor Sin { get; } = sin;

    public void Dispose()
    {
        Cos.Dispose();
        Sin.Dispose();
    }
}
