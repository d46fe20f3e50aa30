using ActorInfer.Model.Generation;
using ActorInfer.Model.Layers;

namespace ActorInfer.Runtime.Schedule;

/// <summary>
/// Everything one GPU batch of a block owns: its sequences, its own left-padded layout, its KV cache per decoder
/// layer and its hidden state between layers. Kept separate per batch so that a batch can later be dropped from a
/// running block (freeing exactly what it holds) without touching the others.
/// </summary>
internal sealed class GpuBatch(GpuBatchIndex index, IReadOnlyList<SequenceState> sequences, BatchLayout layout, int capacity) : IDisposable
{
    public GpuBatchIndex Index => index;
    public IReadOnlyList<SequenceState> Sequences => sequences;
    public BatchLayout Layout => layout;
    public int Capacity => capacity;
    public List<IKvHome> Cache { get; } = [];
    public HiddenStateBuffer? Hidden { get; set; }

    /// <summary>The tokens the output head chose, not yet appended (see <see cref="BlockStep.DeferTokens"/>).</summary>
    public PendingTokens? Tokens { get; set; }

    // Names of what the batch holds, for errors and the buffers made for it: made once per block, not once per step.
    private string?[] _hiddenStateNames = [], _cacheNames = [];

    /// <summary>"the hidden state of batch k after layer j".</summary>
    public string HiddenStateName(LayerIndex after)
    {
        if (after.Value >= _hiddenStateNames.Length) Array.Resize(ref _hiddenStateNames, after.Value + 1);
        return _hiddenStateNames[after.Value] ??= $"the hidden state of {index} after {after}";
    }

    /// <summary>"the cache of decoder layer j, batch k".</summary>
    public string CacheName(int decoderLayer)
    {
        if (decoderLayer >= _cacheNames.Length) Array.Resize(ref _cacheNames, decoderLayer + 1);
        return _cacheNames[decoderLayer] ??= $"the cache of decoder layer {decoderLayer}, {index}";
    }

    private readonly Dictionary<(TorchSharp.DeviceType Device, int Length), (TokenStep Step, TorchSharp.torch.Tensor? Mask)> _masks = [];
    private readonly Dictionary<TorchSharp.DeviceType, TorchSharp.torch.Tensor> _padding = [];
    private readonly Dictionary<TorchSharp.DeviceType, TorchSharp.torch.Tensor> _starts = [];
    private int[]? _startList;

    /// <summary>Each sequence's first attended cache index (its padding), for batch-invariant attention.</summary>
    public IReadOnlyList<int> Starts => _startList ??= [.. Enumerable.Range(0, layout.BatchSize).Select(layout.PadCount)];

    /// <summary><see cref="Starts"/> as int32 on <paramref name="device"/>, copied there once per block.</summary>
    public TorchSharp.torch.Tensor StartsOn(TorchSharp.torch.Device device)
    {
        if (_starts.TryGetValue(device.type, out var starts)) return starts;
        starts = TorchSharp.torch.tensor(Starts.ToArray(), [layout.BatchSize]).to(device).DetachFromDisposeScope();
        _starts[device.type] = starts;
        return starts;
    }
    private (TokenStep Step, RotaryAngles? Angles)? _angles;
    private readonly Dictionary<(TorchSharp.DeviceType Device, int Length), (TokenStep Step, TorchSharp.torch.Tensor? Excluded)> _excluded = [];

    /// <summary>
    /// The decoder layers' rotary angles of this step (null for learned positions), built by the step's first layer and
    /// shared by the others: one upload of the positions per step, not one per layer.
    /// </summary>
    public RotaryAngles? Angles(TokenStep step, ModelArchitecture architecture, int maxPositions, TorchSharp.torch.ScalarType dtype,
        TorchSharp.torch.Device device)
    {
        if (!architecture.PositionsInLayers) return null;
        if (_angles is { } cached && cached.Step == step) return cached.Angles;
        _angles?.Angles?.Dispose();
        _angles = null;
        using var positions = Positions(step, maxPositions, architecture.PositionOffset, device);
        var angles = architecture.Angles(positions, dtype);
        _angles = (step, angles);
        return angles;
    }

    /// <summary>
    /// The attention mask of this step on <paramref name="device"/>, built once per step, device and length rather than
    /// once per layer. Prefill: causal over the padded prompts. Decoding: over <paramref name="attended"/> cache indices
    /// (by default the filled ones, up to this step's), padding and the indices after this step's masked. Null where
    /// nothing is masked (no padding, and no index beyond this step's).
    /// </summary>
    /// <summary>The positions of the step's tokens, [B, T], counted from <paramref name="offset"/> at each prompt's first token.</summary>
    public TorchSharp.torch.Tensor Positions(TokenStep step, int maxPositions, int offset, TorchSharp.torch.Device device) => step.IsPrefill
        ? layout.PrefillPositionIds(device, offset)
        : layout.DecodePositionIds(step.CacheIndex(layout), maxPositions, device, offset);

    /// <summary>The negation of <see cref="Mask"/> (true where a key is excluded), built once per step, device and length.</summary>
    public TorchSharp.torch.Tensor? Excluded(TokenStep step, TorchSharp.torch.Device device, int? attended = null)
    {
        var mask = Mask(step, device, attended);
        if (mask is null) return null;
        var key = (device.type, (int)mask.size(-1));
        if (_excluded.TryGetValue(key, out var cached) && cached.Step == step) return cached.Excluded;
        cached.Excluded?.Dispose();
        var excluded = mask.logical_not().DetachFromDisposeScope();
        _excluded[key] = (step, excluded);
        return excluded;
    }

    public TorchSharp.torch.Tensor? Mask(TokenStep step, TorchSharp.torch.Device device, int? attended = null)
    {
        var filled = step.CacheIndex(layout) + 1;
        var length = step.IsPrefill ? layout.PaddedLength : attended ?? filled;
        if (!step.IsPrefill && length < filled)
            throw new ArgumentException($"a decoding mask over {length} indices cannot reach cache index {filled - 1}");
        if (!layout.HasPadding && (step.IsPrefill || length == filled)) return null;
        if (_masks.TryGetValue((device.type, length), out var cached) && cached.Step == step) return cached.Mask;
        cached.Mask?.Dispose();
        var mask = step.IsPrefill ? layout.PrefillMask(device) : DecodeMask(device, filled - 1, length);
        mask.DetachFromDisposeScope();
        _masks[(device.type, length)] = (step, mask);
        return mask;
    }

    /// <summary>
    /// [B, 1, 1, length]: true from each sequence's first token through <paramref name="cacheIndex"/>. Built on the device
    /// from the batch's padding, copied there once: a mask built on the host would be copied from pageable memory every
    /// step, and that copy waits for the device to finish what the host queued.
    /// </summary>
    private TorchSharp.torch.Tensor DecodeMask(TorchSharp.torch.Device device, int cacheIndex, int length)
    {
        if (!_padding.TryGetValue(device.type, out var padding))
        {
            padding = TorchSharp.torch.tensor(Enumerable.Range(0, layout.BatchSize).Select(b => (long)layout.PadCount(b)).ToArray(),
                [layout.BatchSize, 1, 1, 1]).to(device).DetachFromDisposeScope();
            _padding[device.type] = padding;
        }
        using var scope = TorchSharp.torch.NewDisposeScope();
        var positions = TorchSharp.torch.arange(length, dtype: TorchSharp.torch.ScalarType.Int64, device: device);
        return positions.ge(padding).logical_and_(positions.le(cacheIndex)).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        foreach (var padding in _padding.Values) padding.Dispose();
        _padding.Clear();
        foreach (var starts in _starts.Values) starts.Dispose();
        _starts.Clear();
        foreach (var kv in Cache) kv.Dispose();
        Cache.Clear();
        Hidden?.Dispose();
        Tokens?.Dispose();
        Tokens = null;
        Hidden = null;
        foreach (var (_, mask) in _masks.Values) mask?.Dispose();
        _masks.Clear();
        _angles?.Angles?.Dispose();
        _angles = null;
        foreach (var (_, excluded) in _excluded.Values) excluded?.Dispose();
        _excluded.Clear();
    }
}
