using ActorInfer.Model.Layers;
using ActorInfer.Model.Weights;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Placement;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Schedule;

/// <summary>
/// Every weight tensor in its home tier, read once from the weight source. <see cref="Load"/> brings one schedule
/// layer to the device: device-resident tensors are used in place, the others copied into device leases.
/// </summary>
internal sealed class WeightStore : IDisposable
{
    private readonly IReadOnlyList<ScheduleLayer> _layers;
    private readonly List<Dictionary<string, IDisposable>> _homes = [];
    private readonly ScalarType _dtype;

    // Host copies of device-resident weights (kept when the store is asked to), so that weights leave the device at
    // once under pressure: the copy becomes their home and the device's bytes are freed, nothing is copied.
    private readonly List<Dictionary<string, TensorLease>> _hostCopies = [];
    private readonly bool _keepHostCopies;

    // A layer whose every weight lives whole on the device loads as the same tensors every step: its loaded weights (and the
    // records built over them) are kept until a weight of it moves, so that a step spends no host time on them.
    private readonly List<LoadedWeights?> _resident = [];

    /// <param name="keepHostCopies">Keep a copy of every device-resident weight in CPU memory (held on the CPU tier).</param>
    /// <param name="compress">Store every weight of two or more dimensions 4-bit compressed (<see cref="WeightCompression"/>), in any
    /// tier; a loaded layer expands them on the device before it computes. Host copies are not kept for compressed weights.</param>
    public WeightStore(IReadOnlyList<ScheduleLayer> layers, PlacementPlan plan, IWeightSource source, TierSet tiers, ScalarType dtype,
        bool keepHostCopies = false, bool compress = false)
    {
        _layers = layers;
        _dtype = dtype;
        _keepHostCopies = keepHostCopies;
        Compressed = compress;
        try
        {
            var onCuda = tiers.Device.Device.type == TorchSharp.DeviceType.CUDA;
            for (var j = 0; j < layers.Count; j++)
            {
                var homes = new Dictionary<string, IDisposable>();
                _homes.Add(homes);
                _hostCopies.Add([]);
                _resident.Add(null);
                for (var i = 0; i < layers[j].Weights.Count; i++)
                {
                    var spec = layers[j].Weights[i];
                    var what = $"weight '{spec.Name}'";
                    using var scope = NewDisposeScope();
                    var tier = plan.WeightTiers[j][i];
                    var compressed = IsCompressed(spec);
                    // Device-resident weights go straight to the device, not through a host copy.
                    // Random weights are drawn fastest on the device, then copied straight into their pinned home; weights
                    // to compress are compressed there too (the full-precision tensor never has a home of its own).
                    var loadOn = tier == TierKind.Device || (onCuda && (source is DummyWeightSource || compressed))
                        ? tiers.Device.Device
                        : CPU;
                    var loaded = spec.Load(source, dtype, loadOn).contiguous();
                    if (!loaded.Dims().SequenceEqual(spec.Shape))
                        throw new InvalidDataException($"weight '{spec.Name}' has shape [{string.Join(", ", loaded.Dims())}], expected [{string.Join(", ", spec.Shape)}]");
                    if (compressed)
                    {
                        if (loaded.device_type != loadOn.type) loaded = loaded.to(loadOn);
                        var (codes, ranges) = WeightCompression.Compress(loaded);
                        IDisposable? codesHome = null;
                        try
                        {
                            codesHome = Store(codes, tier, tiers, $"{what} (4-bit codes)");
                            homes[spec.Name] = new CompressedHome(codesHome, Store(ranges, tier, tiers, $"{what} (group ranges)"));
                        }
                        catch
                        {
                            codesHome?.Dispose();
                            throw;
                        }
                        continue;
                    }
                    var home = Store(loaded, tier, tiers, what);
                    homes[spec.Name] = home;
                    if (tier == TierKind.Device && keepHostCopies) KeepHostCopy(j, spec, (TensorLease)home, tiers);
                }
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Whether weights of two or more dimensions are stored 4-bit compressed.</summary>
    public bool Compressed { get; }

    private bool IsCompressed(WeightSpec spec) => Compressed && WeightCompression.Compresses(spec.Shape);

    /// <summary>A new home on <paramref name="tier"/> holding a copy of <paramref name="values"/>.</summary>
    private static IDisposable Store(Tensor values, TierKind tier, TierSet tiers, string what)
    {
        if (tier == TierKind.Disk)
        {
            using var host = values.device_type == TorchSharp.DeviceType.CPU ? values.alias() : values.cpu();
            var file = tiers.RequireDisk().Allocate(MemoryTier.BytesOf(values.Dims(), values.dtype), what);
            try
            {
                file.Write(host, 0);
            }
            catch
            {
                file.Dispose();
                throw;
            }
            return file;
        }
        var lease = tiers.Memory(tier).Allocate(values.Dims(), values.dtype, what);
        try
        {
            lease.Tensor.copy_(values);
        }
        catch
        {
            lease.Dispose();
            throw;
        }
        return lease;
    }

    /// <summary>The stored parts of a weight: itself, or its codes and ranges when compressed (shape and dtype of each).</summary>
    private (long[] Shape, ScalarType DType)[] Parts(WeightSpec spec) => IsCompressed(spec)
        ? [(WeightCompression.CodesShape(spec.Shape), ScalarType.Byte), (WeightCompression.RangesShape(spec.Shape), _dtype)]
        : [(spec.Shape, _dtype)];

    private static IDisposable[] PartsOf(IDisposable home) => home is CompressedHome c ? [c.Codes, c.Ranges] : [home];

    /// <summary>The tier each weight lives on now, per schedule layer.</summary>
    public TierKind TierOf(int layer, string name) => _homes[layer][name] switch
    {
        TensorLease lease => lease.Tier.Kind,
        CompressedHome { Codes: TensorLease lease } => lease.Tier.Kind,
        _ => TierKind.Disk,
    };

    /// <summary>
    /// Moves every weight whose tier differs in <paramref name="plan"/> to its new home: first the weights that
    /// leave the device (so the device's bytes go down before anything new lands there), then the others. Each
    /// move allocates the new home, copies, and frees the old one, so the tiers' accounting is exact throughout.
    /// No copy may be reading a home while this runs (the caller completes its weight transfers first).
    /// </summary>
    /// <returns>The bytes copied (a weight that leaves the device for the host copy it kept moves without one).</returns>
    /// <param name="afterEach">Called after each weight moved (the tiers' accounting has changed).</param>
    // Fully optimized from its first call (and so by AheadCompilation ahead of time): it runs rarely (a budget change), so under
    // tiered compilation its loop over every weight of the model (about a thousand for OPT-6.7B) may be replaced on the
    // stack mid-loop, compiling inside a fall's time to honour.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public long Replace(PlacementPlan plan, TierSet tiers, ICopyEngine copies, Action? afterEach = null)
    {
        long moved = 0;
        foreach (var leavingDevice in new[] { true, false })
            for (var j = 0; j < _layers.Count; j++)
                for (var i = 0; i < _layers[j].Weights.Count; i++)
                {
                    var spec = _layers[j].Weights[i];
                    var from = TierOf(j, spec.Name);
                    var to = plan.WeightTiers[j][i];
                    if (from == to || (from == TierKind.Device) != leavingDevice) continue;
                    _resident[j] = null;
                    // Leaving the device for a host copy it kept copies nothing: only copies count as moved.
                    var copied = !(to == TierKind.Cpu && _hostCopies[j].ContainsKey(spec.Name));
                    _homes[j][spec.Name] = Move(j, _homes[j][spec.Name], spec, to, tiers, copies);
                    if (copied) moved += Parts(spec).Sum(p => MemoryTier.BytesOf(p.Shape, p.DType));
                    afterEach?.Invoke();
                }
        // Every weight is where the plan puts it: what growth kept is now the plan's, or left the device above. A store
        // that keeps no host copies lets go of those growth left behind (the plan's CPU accounting has none).
        if (!_keepHostCopies)
            foreach (var kept in _hostCopies)
            {
                foreach (var c in kept.Values) c.Dispose();
                kept.Clear();
            }
        GrownBytes = 0;
        _growTarget = null;
        return moved;
    }

    private void KeepHostCopy(int layer, WeightSpec spec, TensorLease onDevice, TierSet tiers)
    {
        var copy = tiers.Cpu.Allocate(spec.Shape, _dtype, $"host copy of weight '{spec.Name}'");
        copy.Tensor.copy_(onDevice.Tensor);
        _hostCopies[layer][spec.Name] = copy;
    }

    private IDisposable Move(int layer, IDisposable home, WeightSpec spec, TierKind to, TierSet tiers, ICopyEngine copies)
    {
        var what = $"weight '{spec.Name}'";
        if (home is CompressedHome compressed)
        {
            // Codes first, then ranges: a failure leaves the weight whole in its old home (the moved codes are freed).
            var parts = Parts(spec);
            var codes = MovePart(compressed.Codes, parts[0].Shape, parts[0].DType, to, tiers, copies, $"{what} (4-bit codes)");
            IDisposable ranges;
            try
            {
                ranges = MovePart(compressed.Ranges, parts[1].Shape, parts[1].DType, to, tiers, copies, $"{what} (group ranges)");
            }
            catch
            {
                codes.Dispose();
                throw;
            }
            home.Dispose();
            return new CompressedHome(codes, ranges);
        }
        // Leaving the device for the CPU with a host copy kept: the copy is the new home, nothing moves (and nothing is
        // allocated: a fall frees weights one by one until the device is within its budget).
        if (to == TierKind.Cpu && _hostCopies[layer].Remove(spec.Name, out var kept))
        {
            home.Dispose();
            return kept;
        }
        var target = MovePart(home, spec.Shape, _dtype, to, tiers, copies, what);
        if (to == TierKind.Disk && _hostCopies[layer].Remove(spec.Name, out var stale)) stale.Dispose();
        // Coming to the device from the CPU while host copies are kept: the CPU home stays, as the copy.
        if (to == TierKind.Device && _keepHostCopies && home is TensorLease { Tier.Kind: TierKind.Cpu } cpuHome)
            _hostCopies[layer][spec.Name] = cpuHome;
        else
            home.Dispose();
        return target;
    }

    /// <summary>A copy of one stored tensor in a new home on <paramref name="to"/>; the old home is left to the caller.</summary>
    private static IDisposable MovePart(IDisposable home, long[] shape, ScalarType dtype, TierKind to, TierSet tiers, ICopyEngine copies, string what)
    {
        using var scope = NewDisposeScope();
        if (to == TierKind.Disk)
        {
            var file = tiers.RequireDisk().Allocate(MemoryTier.BytesOf(shape, dtype), what);
            try
            {
                Transfers.WriteFile(copies, tiers, file, 0, ((TensorLease)home).Tensor, what);
            }
            catch
            {
                file.Dispose();
                throw;
            }
            return file;
        }
        var lease = tiers.Memory(to).Allocate(shape, dtype, what);
        try
        {
            if (home is TensorLease memory) lease.Tensor.copy_(memory.Tensor);
            else
            {
                using var read = new Transfers(copies, tiers);
                read.ReadFile((DiskLease)home, 0, lease.Tensor, what);
                read.Complete();
            }
        }
        catch
        {
            lease.Dispose();
            throw;
        }
        return lease;
    }

    /// <summary>
    /// Starts bringing a layer's weights to the device; the result is usable after its transfers' BeforeCompute.
    /// With <paramref name="inShares"/>, copies from CPU memory are not issued yet: the caller issues them in shares
    /// (<see cref="LoadedWeights.IssueThrough"/>) and must issue all of them before that BeforeCompute.
    /// </summary>
    public LoadedWeights Load(LayerIndex layer, Transfers transfers, bool inShares = false)
    {
        if (_resident[layer.Value] is { } kept) return kept;
        var tensors = new Dictionary<string, Tensor>();
        var owned = new List<IDisposable>();
        var pending = new WeightCopies(transfers);
        var expansions = new List<WeightExpansion>();
        // Only while the weights grow toward a target (GrowTowards): otherwise every copy is freed with its layer.
        Dictionary<string, StreamedWeight>? streamed = null;
        foreach (var spec in _layers[layer.Value].Weights)
        {
            var home = _homes[layer.Value][spec.Name];
            var parts = Parts(spec);
            var homes = PartsOf(home);
            var onDevice = new Tensor[homes.Length];
            for (var p = 0; p < homes.Length; p++)
            {
                if (homes[p] is TensorLease { Tier.Kind: TierKind.Device } resident)
                {
                    onDevice[p] = resident.Tensor;
                    continue;
                }
                var part = home is CompressedHome ? (p == 0 ? " (4-bit codes)" : " (group ranges)") : "";
                var work = transfers.Tiers.Device.Allocate(parts[p].Shape, parts[p].DType, $"device copy of weight '{spec.Name}'{part}");
                owned.Add(work);
                onDevice[p] = work.Tensor;
                if (homes[p] is TensorLease memory)
                {
                    pending.Add(work.Tensor, memory.Tensor);
                    if (_growTarget is not null && home is not CompressedHome) (streamed ??= [])[spec.Name] = new StreamedWeight(work, memory);
                }
                else
                    transfers.ReadFile((DiskLease)homes[p], 0, work.Tensor, $"weight '{spec.Name}'{part}", CopyDirection.LoadWeights);
            }
            if (home is CompressedHome)
                expansions.Add(new WeightExpansion(spec.Name, spec.Shape, onDevice[0], onDevice[1]));
            else
                tensors[spec.Name] = onDevice[0];
        }
        if (!inShares) pending.IssueThrough(1);
        // Nothing copied and nothing to expand: every tensor is a device home.
        if (owned.Count == 0 && expansions.Count == 0)
            return _resident[layer.Value] = new LoadedWeights(_layers[layer.Value], tensors, owned, pending, resident: true);
        return new LoadedWeights(_layers[layer.Value], tensors, owned, pending, expansions, transfers.Tiers.Device, _dtype, streamed: streamed);
    }

    // Growth toward a larger device share while a block runs (GrowTowards): the placement grown toward, the bytes it may
    // keep on the device beyond the placement in force, and the weights kept so far.
    private PlacementPlan? _growTarget;
    private long _growAllowance;
    private long _reserve;

    /// <summary>
    /// Bytes of weights kept on the device as their layers streamed them in (<see cref="GrowTowards"/>), beyond the
    /// placement the store was last re-placed to; 0 after every <see cref="Replace"/>.
    /// </summary>
    public long GrownBytes { get; private set; }

    /// <summary>
    /// While a block runs, lets the weights move onto the device as their layers stream them in: a weight that
    /// <paramref name="target"/> places on the device, copied whole from its CPU home for a layer's compute, keeps that copy
    /// as its home when the layer is released (<see cref="Release"/>), and its CPU home stays as its host copy, so that it
    /// leaves the device again at once. Nothing is copied for it beyond the copy the layer made anyway. At most
    /// <paramref name="allowance"/> bytes are kept, and a weight is kept only while the device tier has room for another
    /// layer's weights beside it. Null stops the growth (what was kept stays until the next <see cref="Replace"/>).
    /// </summary>
    public void GrowTowards(PlacementPlan? target, long allowance)
    {
        _growTarget = target;
        _growAllowance = Math.Max(0, allowance);
        if (_reserve == 0)
            _reserve = _layers.Count == 0 ? 0 : _layers.Max(l => l.Weights.Sum(spec => Parts(spec).Sum(p => MemoryTier.BytesOf(p.Shape, p.DType))));
    }

    /// <summary>
    /// A loaded layer is done with (its copies complete and its compute issued after them): the streamed copies that the
    /// growth target places on the device become their weights' homes (see <see cref="GrowTowards"/>; a layer loaded before
    /// the target was set keeps none, and its weights grow the next time it streams them); the rest is freed.
    /// </summary>
    public void Release(LoadedWeights loaded, LayerIndex layer)
    {
        if (_growTarget is { } target && loaded.Streamed.Count > 0)
        {
            var specs = _layers[layer.Value].Weights;
            for (var i = 0; i < specs.Count; i++)
            {
                var spec = specs[i];
                if (target.WeightTiers[layer.Value][i] != TierKind.Device || !loaded.Streamed.TryGetValue(spec.Name, out var s)) continue;
                // Moved meanwhile (a re-placement between the load and now): the copy is not of its home.
                if (!ReferenceEquals(_homes[layer.Value][spec.Name], s.Home)) continue;
                var device = s.Copy.Tier;
                if (GrownBytes + s.Copy.Bytes > _growAllowance || device.BudgetBytes - device.BytesHeld < _reserve) break;
                loaded.Keep(s.Copy);
                _homes[layer.Value][spec.Name] = s.Copy;
                _hostCopies[layer.Value][spec.Name] = s.Home;
                _resident[layer.Value] = null;
                GrownBytes += s.Copy.Bytes;
            }
        }
        loaded.Dispose();
    }

    /// <summary>
    /// Lets weights that growth kept on the device (<see cref="GrowTowards"/>) go back to their host copies, from the last
    /// layer down, until at most <paramref name="allowance"/> bytes of them are left: a smaller fall takes back only what it
    /// needs, with nothing copied, and the growth target stays. No copy may be reading a home while this runs.
    /// </summary>
    /// <returns>The bytes let go.</returns>
    // Fully optimized from its first call, as Replace is: it runs inside a fall's time to honour.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public long TrimGrowth(PlacementPlan inForce, long allowance)
    {
        long released = 0;
        for (var j = _layers.Count - 1; j >= 0 && GrownBytes > Math.Max(0, allowance); j--)
            for (var i = 0; i < _layers[j].Weights.Count && GrownBytes > Math.Max(0, allowance); i++)
            {
                var spec = _layers[j].Weights[i];
                if (inForce.WeightTiers[j][i] == TierKind.Device || _homes[j][spec.Name] is not TensorLease { Tier.Kind: TierKind.Device } grown ||
                    !_hostCopies[j].Remove(spec.Name, out var copy))
                    continue;
                _resident[j] = null;
                _homes[j][spec.Name] = copy;
                GrownBytes -= grown.Bytes;
                released += grown.Bytes;
                grown.Dispose();
            }
        return released;
    }

    public void Dispose()
    {
        _resident.Clear();
        foreach (var homes in _homes)
            foreach (var h in homes.Values) h.Dispose();
        _homes.Clear();
        foreach (var copies in _hostCopies)
            foreach (var c in copies.Values) c.Dispose();
        _hostCopies.Clear();
    }
}

/// <summary>A weight stored 4-bit compressed: the homes of its codes and of its group ranges (on one tier).</summary>
internal sealed class CompressedHome(IDisposable codes, IDisposable ranges) : IDisposable
{
    public IDisposable Codes { get; } = codes;
    public IDisposable Ranges { get; } = ranges;

    public void Dispose()
    {
        Codes.Dispose();
        Ranges.Dispose();
    }
}
