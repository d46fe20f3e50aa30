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
    public HiddenHome? Hidden { get; set; }

    /// <summary>The tokens the output head chose, not yet appended (see <see cref="BlockStep.DeferTokens"/>).</summary>
    public PendingTokens? Tokens { get; set; }

    private readonly Dictionary<TorchSharp.DeviceType, (TokenStep Step, TorchSharp.torch.Tensor? Mask)> _masks = [];

    /// <summary>
    /// The attention mask of this step on <paramref name="device"/>, built once per step and device rather than once
    /// per layer; null when the batch has no padding (prefill is then plain causal attention, decoding unmasked).
    /// </summary>
    public TorchSharp.torch.Tensor? Mask(TokenStep step, TorchSharp.torch.Device device)
    {
        if (!layout.HasPadding) return null;
        if (_masks.TryGetValue(device.type, out var cached) && cached.Step == step) return cached.Mask;
        cached.Mask?.Dispose();
        var mask = step.IsPrefill ? layout.PrefillMask(device) : layout.DecodeMask(step.CacheIndex(layout), device);
        mask.DetachFromDisposeScope();
        _masks[device.type] = (step, mask);
        return mask;
    }

    private readonly Dictionary<(TorchSharp.DeviceType, int Attended), (TokenStep Step, TorchSharp.torch.Tensor Mask)> _rounded = [];

    /// <summary>
    /// The decoding mask of this step over <paramref name="attended"/> cache indices (more than the step has filled:
    /// those after it are masked), built once per step, device and length.
    /// </summary>
    public TorchSharp.torch.Tensor MaskOver(TokenStep step, TorchSharp.torch.Device device, int attended)
    {
        if (_rounded.TryGetValue((device.type, attended), out var cached) && cached.Step == step) return cached.Mask;
        cached.Mask?.Dispose();
        var cacheIndex = step.CacheIndex(layout);
        if (attended <= cacheIndex) throw new ArgumentException($"a decoding mask over {attended} indices cannot reach cache index {cacheIndex}");
        // Built on the device from the batch's padding (copied there once): a host-built mask would be copied from
        // pageable memory every step, and that copy waits for the device to finish what the host queued.
        _padding ??= TorchSharp.torch.tensor(Enumerable.Range(0, layout.BatchSize).Select(b => (long)layout.PadCount(b)).ToArray(),
            [layout.BatchSize, 1, 1, 1]).to(device).DetachFromDisposeScope();
        using var scope = TorchSharp.torch.NewDisposeScope();
        var positions = TorchSharp.torch.arange(attended, dtype: TorchSharp.torch.ScalarType.Int64, device: device);
        var mask = positions.ge(_padding).logical_and_(positions.le(cacheIndex)).MoveToOuterDisposeScope();
        mask.DetachFromDisposeScope();
        _rounded[(device.type, attended)] = (step, mask);
        return mask;
    }

    private TorchSharp.torch.Tensor? _padding;

    public void Dispose()
    {
        foreach (var (_, mask) in _rounded.Values) mask.Dispose();
        _rounded.Clear();
        _padding?.Dispose();
        _padding = null;
        foreach (var kv in Cache) kv.Dispose();
        Cache.Clear();
        Hidden?.Dispose();
        Tokens?.Dispose();
        Tokens = null;
        Hidden = null;
        foreach (var (_, mask) in _masks.Values) mask?.Dispose();
        _masks.Clear();
    }
}
