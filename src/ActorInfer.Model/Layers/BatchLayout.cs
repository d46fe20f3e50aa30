using static TorchSharp.torch;

namespace ActorInfer.Model.Layers;

/// <summary>
/// A left-padded batch: every prompt is right-aligned at <see cref="PaddedLength"/>, so the cache index of a
/// token is the same for every sequence. Positions and masks come from the real lengths, never from token ids
/// (a prompt may contain the pad id as a real token).
/// </summary>
public sealed record BatchLayout
{
    public BatchLayout(IReadOnlyList<int> promptLengths)
    {
        if (promptLengths.Count == 0) throw new ArgumentException("a batch needs at least one sequence");
        foreach (var length in promptLengths)
            if (length < 1) throw new ArgumentException("every prompt needs at least one token");
        PromptLengths = promptLengths.ToArray();
        PaddedLength = PromptLengths.Max();
        HasPadding = PromptLengths.Any(l => l != PaddedLength);
    }

    public IReadOnlyList<int> PromptLengths { get; }
    public int PaddedLength { get; }
    public int BatchSize => PromptLengths.Count;
    public int PadCount(int sequence) => PaddedLength - PromptLengths[sequence];

    /// <summary>False when every prompt has the padded length: then attention needs no mask beyond causality.</summary>
    public bool HasPadding { get; }

    /// <summary>Position ids of the prompt, [B, S], already shifted by OPT's offset (pads get position 1, as HF's -1 + 2).</summary>
    public Tensor PrefillPositions(Device device) => PrefillPositionIds(device, Config.OptConfig.PositionOffset);

    /// <summary>Position ids of the prompt, [B, S], from <paramref name="offset"/> at each prompt's first token (pads get offset - 1).</summary>
    public Tensor PrefillPositionIds(Device device, int offset = 0)
    {
        var data = new long[BatchSize * PaddedLength];
        for (var b = 0; b < BatchSize; b++)
            for (var j = 0; j < PaddedLength; j++)
                data[b * PaddedLength + j] = Math.Max(j - PadCount(b), -1) + offset;
        return tensor(data, [BatchSize, PaddedLength], dtype: ScalarType.Int64).to(device);
    }

    /// <summary>
    /// Position ids of the token at cache index <paramref name="cacheIndex"/>, [B, 1], shifted by OPT's offset. A sequence that has finished
    /// still goes through the batch's later steps (its tokens are discarded); past the model's context
    /// (<paramref name="maxPositions"/>) its position stays at the last one. Only a finished sequence gets there: a
    /// request's prompt and max_tokens fit the context, but a short sequence in a batch with a long one runs as many
    /// steps as the long one.
    /// </summary>
    public Tensor DecodePositions(int cacheIndex, int maxPositions, Device device) =>
        DecodePositionIds(cacheIndex, maxPositions, device, Config.OptConfig.PositionOffset);

    /// <summary>As <see cref="DecodePositions"/>, counted from <paramref name="offset"/>.</summary>
    public Tensor DecodePositionIds(int cacheIndex, int maxPositions, Device device, int offset = 0)
    {
        var data = new long[BatchSize];
        for (var b = 0; b < BatchSize; b++)
            data[b] = Math.Min(cacheIndex - PadCount(b), maxPositions - 1) + offset;
        return tensor(data, [BatchSize, 1], dtype: ScalarType.Int64).to(device);
    }

    /// <summary>
    /// Causal mask over the prompt, [B, 1, S, S], true where a query may attend. A pad query attends to itself
    /// alone so that no row is fully masked (which would turn pad states into NaN and poison later layers).
    /// </summary>
    public Tensor PrefillMask(Device device)
    {
        var s = PaddedLength;
        var data = new bool[BatchSize * s * s];
        for (var b = 0; b < BatchSize; b++)
        {
            var pad = PadCount(b);
            for (var i = 0; i < s; i++)
                for (var j = 0; j <= i; j++)
                    data[(b * s + i) * s + j] = j >= pad || j == i;
        }
        return tensor(data, [BatchSize, 1, s, s]).to(device);
    }

    /// <summary>Mask of one new query over cache indices [0, cacheIndex], [B, 1, 1, cacheIndex + 1].</summary>
    public Tensor DecodeMask(int cacheIndex, Device device)
    {
        var k = cacheIndex + 1;
        var data = new bool[BatchSize * k];
        for (var b = 0; b < BatchSize; b++)
        {
            var pad = PadCount(b);
            for (var j = pad; j < k; j++) data[b * k + j] = true;
        }
        return tensor(data, [BatchSize, 1, 1, k]).to(device);
    }

    /// <summary>Left-pads token ids into [B, S] with <paramref name="padId"/>.</summary>
    public Tensor PadPrompts(IReadOnlyList<IReadOnlyList<int>> prompts, int padId, Device device)
    {
        var data = new long[BatchSize * PaddedLength];
        Array.Fill(data, padId);
        for (var b = 0; b < BatchSize; b++)
        {
            var pad = PadCount(b);
            for (var j = 0; j < prompts[b].Count; j++) data[b * PaddedLength + pad + j] = prompts[b][j];
        }
        return tensor(data, [BatchSize, PaddedLength], dtype: ScalarType.Int64).to(device);
    }
}
