using ActorInfer.Model.Layers;
using ActorInfer.Runtime.Cuda;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Schedule;

/// <summary>
/// Decoding layers replayed as CUDA graphs (<c>--cuda-graphs</c>, <c>actorinfer.cuda-graphs</c>): a decoder layer of a
/// decoding step that reads its batch's device cache in place launches its dozen-odd kernels as one graph. A decoding
/// step at a small batch is bound by launching kernels, not by the device (docs/perf/h100-node-warm-up-pinning/: 13.3 ms
/// a step launched one by one, 9.5 ms as a graph, in PyTorch).
/// <para>
/// A graph replays the addresses its capture saw, so what changes from step to step lives in buffers of the GPU batch's
/// slot, refilled in place once per step: the cache index this step writes (the keys and values go in by
/// <c>index_copy_</c>), the attention mask over a length rounded up to 64 within the cache (the same graph serves 64
/// steps), and the hidden state, passed from layer to layer in two buffers that alternate. The weights and the cache are
/// read where they are: a layer's graph is keyed by (layer, GPU batch, rows, attended length) and holds the addresses
/// of its weights and cache; where they differ (weights re-placed, a new block's cache elsewhere) the layer runs as it
/// is and is captured again when the same addresses come twice in a row. So the first decoding step of a block runs
/// its layers one kernel at a time and the second captures them, unless the block's cache lies where the last one's
/// did.
/// </para>
/// <para>
/// Every run of a layer here, captured or not, is the same arithmetic: the outputs do not depend on whether a graph ran.
/// They may differ in the last bits from the engine without graphs, whose batched products attend over the filled
/// length only. The graphs' intermediates live in one private pool of libtorch's allocator (graphs replay one at a time
/// on the model's stream), outside the tiers' accounting: a layer's intermediates, tens of megabytes. The pool lives until
/// <see cref="Clear"/>: a graph replaced by a new capture gives its memory back to it, not to the device.
/// </para>
/// </summary>
public sealed class DecodeGraphs : IDisposable
{
    private readonly OffloadRuntime _engine;
    private readonly bool _capture;
    private readonly int _limit;
    private readonly Dictionary<(int Batch, int Rows), Slot> _slots = [];
    private readonly Dictionary<(int Layer, int Batch, int Rows, int Attended), Entry> _entries = [];
    private IntPtr _stream;
    private CudaGraph.PoolId _pool;
    private CudaGraph? _keeper;

    /// <param name="capture">
    /// False runs the same path without capturing (on a CPU device, where there is nothing to capture): the arithmetic of
    /// the graphs, checked on the CPU.
    /// </param>
    internal DecodeGraphs(OffloadRuntime engine, bool capture)
    {
        _engine = engine;
        _capture = capture;
        // Graphs of more (layer, batch, rows, length) keys than a few blocks' worth are dropped together, with their pool.
        _limit = 8 * Math.Max(1, engine.Config.NumHiddenLayers) * Math.Max(1, engine.Policy.NumGpuBatches);
    }

    /// <summary>Layers captured, replayed, and run without a graph (first sight of a key, or new addresses), since the start.</summary>
    public long Captures { get; private set; }
    public long Replays { get; private set; }
    public long Uncaptured { get; private set; }

    /// <summary>Why graphs stopped being captured (a capture failed), or null.</summary>
    public string? Failure { get; private set; }

    /// <summary>
    /// Whether a decoder layer of a decoding step can run here: attention on the device over the batch's own device cache
    /// in place, the hidden state kept on the device, learned positions (no per-step rotary angles), plain products and
    /// a kernel that plans nothing (cuDNN's plans each new shape on the calling thread).
    /// </summary>
    internal bool Takes(PositionInputs inputs, IKvHome home, TierKind activationTier) =>
        inputs.AttentionSite == TierKind.Device && inputs.ExpandCache is null && inputs.WorkingCache is not null
        && ReferenceEquals(inputs.WorkingCache, home.Memory) && activationTier == TierKind.Device
        && !_engine.BatchInvariant && !_engine.Architecture.PositionsInLayers && _engine.DecodeAttention != DecodeAttention.Cudnn;

    /// <summary>
    /// Runs decoder layer <paramref name="decoderLayer"/> of a decoding step over <paramref name="batch"/>: writes the step's
    /// keys and values into <paramref name="cache"/> and returns the layer's output (a handle on a buffer of the batch's
    /// slot, valid until the layer after the next one runs for this batch).
    /// </summary>
    internal Tensor Run(GpuBatch batch, int decoderLayer, TokenStep step, DecoderLayerWeights w, LayerKv cache, Tensor hidden)
    {
        var layout = batch.Layout;
        var cacheIndex = step.CacheIndex(layout);
        var attended = LayerAttention.RoundedLength(cacheIndex + 1, (int)cache.Capacity);
        var key = (decoderLayer, batch.Index.Value, layout.BatchSize, attended);
        if (_entries.Count >= _limit && !_entries.ContainsKey(key)) Clear();
        var slot = SlotFor(batch, hidden);
        var products = hidden.device_type == TorchSharp.DeviceType.CUDA && _engine.DecodeAttention == DecodeAttention.Products;
        var mask = slot.Prepare(batch, step, cacheIndex, attended, products);
        var input = slot.Hidden[decoderLayer % 2];
        var output = slot.Hidden[(decoderLayer + 1) % 2];
        if (TensorData.Pointer(hidden) != TensorData.Pointer(input)) input.copy_(hidden);
        void Work() => Layer(w, cache, slot.Index, mask, products, attended, input, output);

        var signature = Signature(w, cache, slot.Index, mask, input, output);
        if (_entries.TryGetValue(key, out var entry) && entry.Graph is { } graph && entry.Captured!.AsSpan().SequenceEqual(signature))
        {
            graph.Replay();
            Replays++;
            return output.alias();
        }
        entry ??= new Entry();
        entry.Graph?.Dispose();
        entry.Graph = null;
        _entries[key] = entry;
        if (_capture && Failure is null && entry.Seen is not null && entry.Seen.AsSpan().SequenceEqual(signature))
        {
            try
            {
                if (_stream == IntPtr.Zero) _stream = CudaRuntime.CreateStream();
                KeepPool(hidden.device);
                entry.Graph = CudaGraph.Capture(Work, _stream, _pool);
                entry.Captured = signature;
                Captures++;
                entry.Graph.Replay();
                Replays++;
                return output.alias();
            }
            catch (Exception ex) when (entry.Graph is null)
            {
                Failure = $"decoder layer {decoderLayer}, {batch.Index}: {ex.Message}";
                Console.Error.WriteLine($"cuda graphs: a capture failed ({Failure}); decoding runs its kernels one by one from here");
            }
        }
        entry.Seen = signature;
        Work();
        Uncaptured++;
        return output.alias();
    }

    /// <summary>
    /// The layer's arithmetic over the slot's buffers: the step's keys and values written at the index the slot holds,
    /// attention over <paramref name="attended"/> entries under the slot's mask, the result written into
    /// <paramref name="output"/>. Every tensor it makes is freed before it returns (during a capture, into the pool).
    /// </summary>
    private void Layer(DecoderLayerWeights w, LayerKv cache, Tensor index, Tensor mask, bool products, int attended, Tensor input, Tensor output)
    {
        var architecture = _engine.Architecture;
        using var attentionInput = architecture.AttentionInput(input, w.Attention);
        using var qkv = architecture.Project(attentionInput, w.Attention, null);
        cache.Keys.index_copy_(2, index, qkv.Keys);
        cache.Values.index_copy_(2, index, qkv.Values);
        var (keys, values) = cache.Prefix(attended);
        Tensor attendedState;
        using (keys)
        using (values)
        using (var context = AttentionMath.Attend(qkv.Queries, keys, values, products ? null : mask, decode: _engine.DecodeAttention,
                   excluded: products ? mask : null))
            attendedState = architecture.AttentionOutput(context, input, w.Attention);
        using (attendedState)
        using (var up = architecture.FfnUp(attendedState, w.Ffn))
        using (var down = architecture.FfnDown(up, attendedState, w.Ffn))
            output.copy_(down);
    }

    /// <summary>
    /// The pool the layers' graphs share, held by a graph of its own: libtorch frees a pool once the last graph using it
    /// is destroyed, and refuses (by an assertion that ends the process) a capture into a pool id it has freed, which the
    /// layers' graphs alone would hit when a new block's cache replaces every one of them.
    /// </summary>
    private void KeepPool(Device device)
    {
        if (_keeper is not null) return;
        _keeper = CudaGraph.Capture(() =>
        {
            using var one = ones(1, ScalarType.Float32, device);
            one.add_(1);
        }, _stream, default);
        _pool = _keeper.Pool;
    }

    /// <summary>The addresses a layer's graph reads and writes: its weights, its cache, the slot's buffers.</summary>
    private static long[] Signature(DecoderLayerWeights w, LayerKv cache, Tensor index, Tensor mask, Tensor input, Tensor output)
    {
        var pointers = new List<long>(24);
        foreach (var t in w.Tensors()) pointers.Add((long)TensorData.Pointer(t));
        pointers.Add((long)TensorData.Pointer(cache.Keys));
        pointers.Add((long)TensorData.Pointer(cache.Values));
        pointers.Add((long)TensorData.Pointer(index));
        pointers.Add((long)TensorData.Pointer(mask));
        pointers.Add((long)TensorData.Pointer(input));
        pointers.Add((long)TensorData.Pointer(output));
        return [.. pointers];
    }

    private Slot SlotFor(GpuBatch batch, Tensor hidden)
    {
        var key = (batch.Index.Value, batch.Layout.BatchSize);
        if (_slots.TryGetValue(key, out var slot) && slot.Fits(hidden)) return slot;
        slot?.Dispose();
        slot = new Slot(hidden);
        _slots[key] = slot;
        return slot;
    }

    /// <summary>Drops every graph (their pool with them) and every slot.</summary>
    public void Clear()
    {
        foreach (var entry in _entries.Values) entry.Graph?.Dispose();
        _entries.Clear();
        foreach (var slot in _slots.Values) slot.Dispose();
        _slots.Clear();
        _keeper?.Dispose();
        _keeper = null;
        _pool = default;
    }

    public void Dispose()
    {
        Clear();
        if (_stream != IntPtr.Zero) CudaRuntime.DestroyStream(_stream);
        _stream = IntPtr.Zero;
    }

    private sealed class Entry
    {
        /// <summary>The addresses of the layer's last run without a graph.</summary>
        public long[]? Seen;

        public CudaGraph? Graph;

        /// <summary>The addresses <see cref="Graph"/> was captured with.</summary>
        public long[]? Captured;
    }

    /// <summary>
    /// A GPU batch position's buffers at one row count: the hidden state's two alternating buffers, the cache index the step
    /// writes, and the step's mask per attended length (true where a key is attended; with batched products, its negation).
    /// </summary>
    private sealed class Slot : IDisposable
    {
        private readonly Dictionary<int, Tensor> _masks = [];
        private GpuBatch? _batch;
        private TokenStep _step;
        private int _attended;

        public Slot(Tensor hidden)
        {
            Hidden = [empty_like(hidden).DetachFromDisposeScope(), empty_like(hidden).DetachFromDisposeScope()];
            Index = zeros([1], ScalarType.Int64, hidden.device).DetachFromDisposeScope();
        }

        public Tensor[] Hidden { get; }
        public Tensor Index { get; }

        public bool Fits(Tensor hidden) =>
            Hidden[0].dtype == hidden.dtype && Hidden[0].device == hidden.device && Hidden[0].shape.AsSpan().SequenceEqual(hidden.shape);

        /// <summary>Fills the index and the mask for <paramref name="step"/> of <paramref name="batch"/>, once per step; the mask.</summary>
        public Tensor Prepare(GpuBatch batch, TokenStep step, int cacheIndex, int attended, bool excluded)
        {
            var device = Hidden[0].device;
            if (!_masks.TryGetValue(attended, out var mask))
            {
                mask = empty([batch.Layout.BatchSize, 1, 1, attended], ScalarType.Bool, device).DetachFromDisposeScope();
                _masks[attended] = mask;
                _batch = null;
            }
            if (ReferenceEquals(_batch, batch) && _step == step && _attended == attended) return mask;
            Index.fill_(cacheIndex);
            var source = excluded ? batch.Excluded(step, device, attended) : batch.Mask(step, device, attended);
            if (source is null) mask.fill_(!excluded);
            else mask.copy_(source);
            (_batch, _step, _attended) = (batch, step, attended);
            return mask;
        }

        public void Dispose()
        {
            foreach (var h in Hidden) h.Dispose();
            Index.Dispose();
            foreach (var m in _masks.Values) m.Dispose();
            _masks.Clear();
        }
    }
}
