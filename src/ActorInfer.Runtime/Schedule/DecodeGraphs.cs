using ActorInfer.Model.Layers;
using ActorInfer.Runtime.Cuda;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Schedule;

/// <summary>
/// Decoding layers replayed as CUDA graphs (<c>--cuda-graphs</c>, <c>actorinfer.cuda-graphs</c>): a decoder layer of a
/// decoding step that reads its batch's device cache in place launches its kernels as captured graphs. A decoding step at
/// a small batch is bound by launching kernels, not by the device (docs/perf/h100-node-warm-up-pinning/: 13.3 ms a step
/// launched one by one, 9.5 ms as a graph, in PyTorch).
/// <para>
/// On CUDA, with our fused kernel (the default), a layer is one graph for every step of a block: the kernel is launched over
/// the cache's capacity and reads the filled length from the slot's cache index on the device, so its context is the one
/// the engine computes without graphs, bit for bit (the chunks past the length are empty; `actorinfer version` checks it).
/// Elsewhere a layer is one graph per attended length: the length the engine attends without graphs (batched products over
/// the filled entries up to a multiple of 8; libtorch's fused kernels, <c>efficient</c>, up to a multiple of 64), under the
/// slot's mask. With batched products the outputs are the engine's without graphs, bit for bit: where nothing is masked the
/// engine drops the mask, and filling no score leaves the same scores. libtorch's fused kernels' may differ in the last bits
/// (they take another path without a mask). A block of the same geometry replays the last one's graphs. On the CPU,
/// where nothing is captured, the layer attends under the engine's own mask (none where nothing is masked): the path's
/// arithmetic is the engine's there, bit for bit.
/// </para>
/// <para>
/// A graph replays the addresses its capture saw, so what changes from step to step lives in buffers of the GPU batch's
/// slot, refilled in place: the cache index this step writes (the keys and values go in by <c>index_copy_</c>), the
/// mask and its negation, and the hidden state, passed from layer to layer in two buffers that alternate. The weights and the cache are read where they are: a graph is keyed by (layer,
/// GPU batch, rows, attended length) and holds the addresses it reads; where they differ (weights
/// re-placed, a new block's cache elsewhere) the work runs as it is and is captured again when the same addresses come
/// twice in a row. So the first decoding step at each attended length runs uncaptured.
/// </para>
/// <para>
/// The graphs' intermediates live in one private pool of libtorch's allocator (graphs replay one at a time on the
/// model's stream), outside the tiers' accounting: a layer's intermediates, tens of megabytes. The pool lives until the
/// graphs are cleared: a graph replaced by a new capture gives its memory back to it, not to the device.
/// </para>
/// </summary>
public sealed class DecodeGraphs : IDisposable
{
    private readonly OffloadRuntime _engine;
    private readonly bool _capture;
    private readonly int _limit;
    private readonly Dictionary<(int Batch, int Rows), Slot> _slots = [];
    private readonly Dictionary<GraphKey, Entry> _entries = [];

    private readonly record struct GraphKey(int Layer, int Batch, int Rows, int Attended);
    private IntPtr _stream;
    private CudaGraph.PoolId _pool;
    private CudaGraph? _keeper;
    // Whether our fused kernel attends this engine's decoding (its type, device and heads are fixed): asked once.
    private bool? _overCapacity;

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

    /// <summary>
    /// Graphs captured, graph replays, and decoding layers run without a graph (first sight of a key, new addresses, or
    /// on the CPU), since the start.
    /// </summary>
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
        // Our fused kernel reads the filled length from the slot's cache index on the device: launched over the cache's
        // capacity, one graph a layer serves every step of the block. Elsewhere one graph a layer per attended length, the
        // length the engine attends without graphs: batched products over the filled entries (on CUDA up to a multiple of 8),
        // libtorch's fused kernels over them up to a multiple of 64.
        var products = _engine.DecodeAttention == DecodeAttention.Products;
        var overCapacity = _overCapacity ??= _engine.DecodeAttention == DecodeAttention.Fused && DecodeAttentionCuda.Decodes(hidden.dtype,
            hidden.device, _engine.Config.NumAttentionHeads, _engine.Config.NumKeyValueHeads, _engine.Config.HeadDim);
        var attended = overCapacity ? (int)cache.Capacity
            : products || _engine.DecodeAttention == DecodeAttention.Fused
            ? LayerAttention.AlignedLength(cacheIndex + 1, (int)cache.Capacity, hidden.device_type)
            : LayerAttention.RoundedLength(cacheIndex + 1, (int)cache.Capacity);
        var slot = SlotFor(batch, hidden);
        slot.Prepare(batch, step, cacheIndex);
        var input = slot.Hidden[decoderLayer % 2];
        var output = slot.Hidden[(decoderLayer + 1) % 2];
        if (TensorData.Pointer(hidden) != TensorData.Pointer(input)) input.copy_(hidden);
        List<Tensor> reads = [.. w.Tensors(), cache.Keys, cache.Values, slot.Index, input, output];
        Tensor? mask, excluded = null;
        if (_capture)
        {
            // A capture reads the slot's buffers, refilled every step.
            (mask, var negation) = slot.Mask(batch, step, attended);
            if (products) excluded = negation;
            reads.AddRange([mask, negation]);
        }
        else mask = batch.Mask(step, hidden.device, attended);
        Graph(new GraphKey(decoderLayer, batch.Index.Value, layout.BatchSize, attended), [.. reads],
            () => Whole(w, cache, slot.Index, mask, excluded, attended, input, output, overCapacity), decoderLayer, batch);
        return output.alias();
    }

    /// <summary>
    /// Runs <paramref name="work"/> as the graph of <paramref name="key"/>: replayed where it was captured over these
    /// <paramref name="reads"/>' addresses, captured where the last run saw the same ones, else run as it is.
    /// </summary>
    private void Graph(GraphKey key, Tensor[] reads, Action work, int decoderLayer, GpuBatch batch)
    {
        var signature = new long[reads.Length];
        for (var i = 0; i < reads.Length; i++) signature[i] = (long)TensorData.Pointer(reads[i]);
        if (_entries.TryGetValue(key, out var entry) && entry.Graph is { } graph && entry.Captured!.AsSpan().SequenceEqual(signature))
        {
            graph.Replay();
            Replays++;
            return;
        }
        if (entry is null && _entries.Count >= _limit) ClearGraphs();
        entry ??= new Entry();
        entry.Graph?.Dispose();
        entry.Graph = null;
        _entries[key] = entry;
        if (_capture && Failure is null && entry.Seen is not null && entry.Seen.AsSpan().SequenceEqual(signature))
        {
            try
            {
                if (_stream == IntPtr.Zero) _stream = CudaRuntime.CreateStream();
                KeepPool(reads[0].device);
                DecodeAttentionCuda.PrepareStream(reads[0].device, _stream, (long)key.Rows * _engine.Config.NumKeyValueHeads);
                entry.Graph = CudaGraph.Capture(work, _stream, _pool);
                entry.Captured = signature;
                Captures++;
                entry.Graph.Replay();
                Replays++;
                return;
            }
            catch (Exception ex) when (entry.Graph is null)
            {
                Failure = $"decoder layer {decoderLayer}, {batch.Index}: {ex.Message}";
                Console.Error.WriteLine($"cuda graphs: a capture failed ({Failure}); decoding runs its kernels one by one from here");
            }
        }
        entry.Seen = signature;
        work();
        Uncaptured++;
    }

    /// <summary>
    /// A whole layer over the slot's buffers: the step's keys and values written at the index the slot holds, attention over
    /// <paramref name="attended"/> entries under the slot's mask, the result written into <paramref name="output"/>. Every
    /// tensor it makes is freed before it returns (during a capture, into the pool).
    /// </summary>
    private void Whole(DecoderLayerWeights w, LayerKv cache, Tensor index, Tensor? mask, Tensor? excluded, int attended, Tensor input, Tensor output,
        bool lengthOnDevice)
    {
        using var qkv = Project(w.Attention, cache, index, input);
        var (keys, values) = cache.Prefix(attended);
        using (keys)
        using (values)
        using (var context = AttentionMath.Attend(qkv.Queries, keys, values, mask, decode: _engine.DecodeAttention, excluded: excluded,
            last: lengthOnDevice ? index : null))
            Rest(w, context, input, output);
    }

    /// <summary>The attention's input and projection, the step's keys and values written into the cache at the slot's index.</summary>
    private QueryKeyValue Project(AttentionWeights w, LayerKv cache, Tensor index, Tensor input)
    {
        var architecture = _engine.Architecture;
        using var attentionInput = architecture.AttentionInput(input, w);
        var qkv = architecture.Project(attentionInput, w, null);
        cache.Keys.index_copy_(2, index, qkv.Keys);
        cache.Values.index_copy_(2, index, qkv.Values);
        return qkv;
    }

    /// <summary>The output projection and the MLP over the attention's context, written into <paramref name="output"/>.</summary>
    private void Rest(DecoderLayerWeights w, Tensor context, Tensor input, Tensor output)
    {
        var architecture = _engine.Architecture;
        using var attendedState = architecture.AttentionOutput(context, input, w.Attention);
        using var up = architecture.FfnUp(attendedState, w.Ffn);
        using var down = architecture.FfnDown(up, attendedState, w.Ffn);
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

    private Slot SlotFor(GpuBatch batch, Tensor hidden)
    {
        var key = (batch.Index.Value, batch.Layout.BatchSize);
        if (_slots.TryGetValue(key, out var slot) && slot.Fits(hidden)) return slot;
        // Slots of many (batch, rows) pairs left by blocks of other sizes: dropped together, with the graphs that read them.
        if (slot is null && _slots.Count >= MaxSlots) Clear();
        slot?.Dispose();
        slot = new Slot(hidden);
        _slots[key] = slot;
        return slot;
    }

    private const int MaxSlots = 64;

    /// <summary>Drops every graph (their pool with them) and every slot.</summary>
    public void Clear()
    {
        ClearGraphs();
        foreach (var slot in _slots.Values) slot.Dispose();
        _slots.Clear();
    }

    /// <summary>
    /// Drops every graph and the pool they share. A graph whose replay is still queued on the device is freed by CUDA once
    /// it completes; its pool's memory goes back through the allocator, which frees it only after synchronizing.
    /// </summary>
    private void ClearGraphs()
    {
        foreach (var entry in _entries.Values) entry.Graph?.Dispose();
        _entries.Clear();
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
    /// writes, and the step's mask per attended length (true where a key is attended) with its negation.
    /// </summary>
    private sealed class Slot : IDisposable
    {
        private readonly Dictionary<int, (Tensor Mask, Tensor Excluded, bool Filled)> _masks = [];
        private GpuBatch? _batch;
        private TokenStep _step;

        public Slot(Tensor hidden)
        {
            Hidden = [empty_like(hidden).DetachFromDisposeScope(), empty_like(hidden).DetachFromDisposeScope()];
            Index = zeros([1], ScalarType.Int64, hidden.device).DetachFromDisposeScope();
        }

        public Tensor[] Hidden { get; }
        public Tensor Index { get; }

        public bool Fits(Tensor hidden) =>
            Hidden[0].dtype == hidden.dtype && Hidden[0].device_type == hidden.device_type && Hidden[0].device_index == hidden.device_index
            && Hidden[0].shape.AsSpan().SequenceEqual(hidden.shape);

        /// <summary>Fills the cache index for <paramref name="step"/> of <paramref name="batch"/>, once per step.</summary>
        public void Prepare(GpuBatch batch, TokenStep step, int cacheIndex)
        {
            if (ReferenceEquals(_batch, batch) && _step == step) return;
            Index.fill_(cacheIndex);
            foreach (var attended in _masks.Keys.ToArray()) _masks[attended] = _masks[attended] with { Filled = false };
            (_batch, _step) = (batch, step);
        }

        /// <summary>
        /// The step's mask over <paramref name="attended"/> entries and its negation (what batched products exclude), filled
        /// once per step (after <see cref="Prepare"/>).
        /// </summary>
        public (Tensor Mask, Tensor Excluded) Mask(GpuBatch batch, TokenStep step, int attended)
        {
            var device = Hidden[0].device;
            if (_masks.TryGetValue(attended, out var held) && held.Filled) return (held.Mask, held.Excluded);
            var mask = held.Mask ?? empty([batch.Layout.BatchSize, 1, 1, attended], ScalarType.Bool, device).DetachFromDisposeScope();
            var excluded = held.Excluded ?? empty_like(mask).DetachFromDisposeScope();
            if (batch.Mask(step, device, attended) is { } source) mask.copy_(source);
            else mask.fill_(true);
            using (var negation = mask.logical_not()) excluded.copy_(negation);
            _masks[attended] = (mask, excluded, true);
            return (mask, excluded);
        }

        public void Dispose()
        {
            foreach (var h in Hidden) h.Dispose();
            Index.Dispose();
            foreach (var (m, e, _) in _masks.Values)
            {
                m.Dispose();
                e.Dispose();
            }
            _masks.Clear();
        }
    }
}
