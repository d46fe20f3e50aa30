using ActorInfer.Model.Config;
using ActorInfer.Model.Layers;
using ActorInfer.Planning;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;

namespace ActorInfer.Runtime.Placement;

/// <summary>Bytes on each tier.</summary>
public sealed record TierBytes(long Device, long Cpu, long Disk)
{
    public static TierBytes Zero { get; } = new(0, 0, 0);

    /// <summary>Bytes on every tier together.</summary>
    public long Sum => Device + Cpu + Disk;

    public long Of(TierKind kind) => kind switch
    {
        TierKind.Device => Device,
        TierKind.Cpu => Cpu,
        _ => Disk,
    };

    public static TierBytes On(TierKind kind, long bytes) => kind switch
    {
        TierKind.Device => new(bytes, 0, 0),
        TierKind.Cpu => new(0, bytes, 0),
        _ => new(0, 0, bytes),
    };

    public static TierBytes operator +(TierBytes a, TierBytes b) => new(a.Device + b.Device, a.Cpu + b.Cpu, a.Disk + b.Disk);

    public override string ToString() => $"device {Device} B, cpu {Cpu} B, disk {Disk} B";
}

/// <summary>The geometry of one GPU batch of a block: sequences, padded prompt length and cache capacity.</summary>
public sealed record BatchShape(int Size, int PaddedLength, int Capacity);

/// <summary>
/// Where every tensor of a job lives, decided before anything is allocated, and the bytes that placement holds on
/// each tier at its peak. Weights: whole tensors by FlexGen's rule over each schedule layer's placement groups
/// (<see cref="WeightPlacement"/>: a decoder layer's attention and MLP apart, disk first). KV cache: each
/// (decoder layer, GPU batch) pair's cache lives on one tier; pairs are enumerated layer-major and split by the
/// same midpoint rule over equal items, so the share of pairs per tier matches the fractions. Activations: the
/// output of each (schedule layer, GPU batch) likewise. Working buffers: the double-buffered device copies of
/// off-device weights (compressed weights count as stored, plus one layer expanded on the device), cache and activations, CPU-attention buffers, and CPU staging for disk transfers when the
/// device is not the CPU. Compute temporaries inside one (layer, batch) are not tier buffers and are not counted.
/// </summary>
public sealed class PlacementPlan
{
    private PlacementPlan(IReadOnlyList<IReadOnlyList<TierKind>> weightTiers, IReadOnlyList<TierKind> cacheTiers,
        IReadOnlyList<TierKind> activationTiers, int batchCount, TierBytes weights, TierBytes cache, TierBytes activations,
        TierBytes working)
    {
        WeightTiers = weightTiers;
        CacheTiers = cacheTiers;
        ActivationTiers = activationTiers;
        BatchCount = batchCount;
        Weights = weights;
        Cache = cache;
        Activations = activations;
        Working = working;
    }

    /// <summary>Per schedule layer, the tier of each of its weight specs.</summary>
    public IReadOnlyList<IReadOnlyList<TierKind>> WeightTiers { get; }
    public IReadOnlyList<TierKind> CacheTiers { get; }
    public IReadOnlyList<TierKind> ActivationTiers { get; }
    public int BatchCount { get; }
    public TierBytes Weights { get; }
    public TierBytes Cache { get; }
    public TierBytes Activations { get; }
    public TierBytes Working { get; }
    public TierBytes Total => Weights + Cache + Activations + Working;

    public TierKind CacheTier(int decoderLayer, GpuBatchIndex batch) => CacheTiers[decoderLayer * BatchCount + batch.Value];
    public TierKind ActivationTier(LayerIndex layer, GpuBatchIndex batch) => ActivationTiers[layer.Value * BatchCount + batch.Value];

    /// <summary>The weights alone (what an engine holds between jobs) with their device working buffers.</summary>
    public static PlacementPlan ForWeights(IReadOnlyList<ScheduleLayer> layers, Policy policy, long elementSize, bool deviceIsCpu) =>
        ForBlock(layers, null, policy, elementSize, [], deviceIsCpu);

    /// <summary>Weights plus the cache, activations and working buffers of a block of GPU batches.</summary>
    public static PlacementPlan ForBlock(IReadOnlyList<ScheduleLayer> layers, ModelConfig? config, Policy policy, long elementSize,
        IReadOnlyList<BatchShape> batches, bool deviceIsCpu)
    {
        var weightTiers = new List<IReadOnlyList<TierKind>>(layers.Count);
        var weights = TierBytes.Zero;
        long maxOffDeviceLayer = 0, maxDiskLayer = 0, maxExpandedLayer = 0;
        var spread = policy.SpreadWeights ? SpreadTiers(layers, policy.Weights) : null;
        for (var j = 0; j < layers.Count; j++)
        {
            var layer = layers[j];
            // Compressed weights are held (and moved) as codes and ranges, and expanded on the device one layer at a time.
            var sizes = layer.Weights.Select(w => WeightCompression.StoredBytes(w.Shape, elementSize, policy.CompressWeights)).ToArray();
            if (policy.CompressWeights)
                maxExpandedLayer = Math.Max(maxExpandedLayer,
                    layer.Weights.Where(w => WeightCompression.Compresses(w.Shape)).Sum(w => w.Elements * elementSize));
            var tiers = spread?[j] ?? WeightTiersOf(layer, policy.Weights);
            weightTiers.Add(tiers);
            long offDevice = 0, disk = 0;
            for (var i = 0; i < sizes.Length; i++)
            {
                weights += TierBytes.On(tiers[i], sizes[i]);
                if (tiers[i] != TierKind.Device) offDevice += sizes[i];
                if (tiers[i] == TierKind.Disk) disk += sizes[i];
            }
            maxOffDeviceLayer = Math.Max(maxOffDeviceLayer, offDevice);
            maxDiskLayer = Math.Max(maxDiskLayer, disk);
        }
        var working = TierBytes.On(TierKind.Device, 2 * maxOffDeviceLayer + maxExpandedLayer);
        var staging = deviceIsCpu ? 0 : 2 * maxDiskLayer;

        var decoderLayers = layers.Count(l => l.Kind == ScheduleLayerKind.Decoder);
        var cacheTiers = TierShares.AssignEqual(decoderLayers * batches.Count, policy.Cache);
        var activationTiers = TierShares.AssignEqual((layers.Count - 1) * batches.Count, policy.Activations);
        var cache = TierBytes.Zero;
        var activations = TierBytes.Zero;
        if (config is not null && batches.Count > 0)
        {
            long hiddenRow = config.HiddenSize * elementSize;
            // A token's keys (or values) span the key/value heads only: fewer than the hidden size under grouped-query attention.
            long cacheRow = (long)config.KeyValueDim * elementSize;
            // Queries and the attention context span the query heads, which an explicit head_dim may make wider than the hidden size.
            long attentionRow = Math.Max(config.HiddenSize, (long)config.NumAttentionHeads * config.HeadDim) * elementSize;
            var compressed = policy.CompressCache;
            long ExpandedBytes(BatchShape b) => 2L * b.Size * b.Capacity * cacheRow;
            long CacheBytes(BatchShape b) => compressed
                ? CompressedKvHome.Bytes(b.Size, b.Capacity, config.KeyValueDim, elementSize)
                : ExpandedBytes(b);
            long HiddenBytes(BatchShape b) => (long)b.Size * b.PaddedLength * hiddenRow;
            var maxCache = batches.Max(CacheBytes);
            var maxExpanded = batches.Max(ExpandedBytes);
            var maxHidden = batches.Max(HiddenBytes);
            var maxBatch = batches.Max(b => b.Size);
            bool offDeviceCache = false, diskCache = false, offDeviceHidden = false, diskHidden = false, cpuAttention = false, deviceCache = false;
            for (var l = 0; l < decoderLayers; l++)
                for (var k = 0; k < batches.Count; k++)
                {
                    var tier = cacheTiers[l * batches.Count + k];
                    cache += TierBytes.On(tier, CacheBytes(batches[k]));
                    offDeviceCache |= tier != TierKind.Device;
                    diskCache |= tier == TierKind.Disk;
                    cpuAttention |= tier != TierKind.Device && policy.CpuAttention;
                    deviceCache |= tier == TierKind.Device;
                }
            var activationKinds = new HashSet<TierKind>();
            for (var k = 0; k < batches.Count; k++)
                foreach (var kind in Enum.GetValues<TierKind>())
                {
                    var used = false;
                    for (var j = 0; j < layers.Count - 1; j++)
                        used |= activationTiers[j * batches.Count + k] == kind;
                    if (!used) continue;
                    activations += TierBytes.On(kind, HiddenBytes(batches[k]));
                    activationKinds.Add(kind);
                    offDeviceHidden |= kind != TierKind.Device;
                    diskHidden |= kind == TierKind.Disk;
                }
            long deviceWork, cpuWork;
            if (!compressed)
            {
                // Device: the current and the next batch's loaded cache (a disk read also holds a token-major half) and hidden state, and the context back from CPU attention.
                deviceWork = (offDeviceCache ? (diskCache ? 3 : 2) * maxCache : 0) + (offDeviceHidden ? 2 * maxHidden : 0) +
                             (cpuAttention ? maxBatch * attentionRow : 0);
                // CPU: q, k, v and context of CPU attention, and a CPU working cache for disk-resident cache attended there.
                cpuWork = cpuAttention ? 4 * maxBatch * attentionRow + (diskCache ? 3 * maxCache : 0) : 0;
            }
            else
            {
                // A compressed cache is never read in place: the current and the next batch each hold an expanded working
                // cache where attention runs and, when home is another tier, the compressed prefix staged beside it.
                var deviceAttended = deviceCache || (offDeviceCache && !policy.CpuAttention);
                var stagedOnDevice = offDeviceCache && !policy.CpuAttention;
                deviceWork = (deviceAttended ? 2 * maxExpanded : 0) + (stagedOnDevice ? 2 * maxCache : 0) +
                             (offDeviceHidden ? 2 * maxHidden : 0) + (cpuAttention ? maxBatch * attentionRow : 0);
                cpuWork = cpuAttention ? 4 * maxBatch * attentionRow + 2 * maxExpanded + (diskCache ? 2 * maxCache : 0) : 0;
            }
            working += new TierBytes(deviceWork, cpuWork, 0);
            // The batch being computed holds its input state until its output state is stored: one more per tier.
            foreach (var kind in activationKinds) working += TierBytes.On(kind, maxHidden);
            if (!deviceIsCpu && (diskCache || diskHidden)) staging = Math.Max(staging, 2 * Math.Max(maxCache, maxHidden));
        }
        working += TierBytes.On(TierKind.Cpu, staging);
        return new PlacementPlan(weightTiers, cacheTiers, activationTiers, batches.Count, weights, cache, activations, working);
    }

    /// <summary>Each weight's tier: FlexGen's rule over the layer's placement groups, by elements (as stored or not).</summary>
    private static TierKind[] WeightTiersOf(ScheduleLayer layer, TierFractions fractions)
    {
        var tiers = new TierKind[layer.Weights.Count];
        foreach (var group in layer.PlacementGroups)
        {
            var placed = WeightPlacement.Assign([.. group.Select(i => layer.Weights[i].Elements)], fractions);
            for (var k = 0; k < group.Count; k++)
                tiers[group[k]] = TierShares.KindOf(placed[k]);
        }
        return tiers;
    }

    /// <summary>
    /// A schedule's spread orders (<see cref="WeightPlacement.SpreadOrdering"/>) over its placement groups as the tensors are
    /// apart (<see cref="ScheduleLayer.GroupsApart"/>), a decoder layer's by its index, and for each of the schedule's
    /// weights the (group, index) of the tensor whose tier it takes: its own, or for a stacked Q, K and V its first part's
    /// (where it was stacked, all three lie there). Made once per schedule: a runtime plans its one schedule again and again.
    /// </summary>
    private sealed class SpreadSchedule
    {
        public required WeightPlacement.SpreadOrdering Ordering { get; init; }
        public required (int Group, int Index)[][] Sources { get; init; }

        public static SpreadSchedule Of(IReadOnlyList<ScheduleLayer> layers)
        {
            var groups = new List<WeightPlacement.SpreadGroup>();
            var at = new Dictionary<(int, string), (int, int)>();
            var decoderLayers = 0;
            for (var j = 0; j < layers.Count; j++)
            {
                var decoder = layers[j].Kind == ScheduleLayerKind.Decoder ? decoderLayers++ : -1;
                foreach (var group in layers[j].GroupsApart)
                {
                    for (var k = 0; k < group.Count; k++) at[(j, group[k].Name)] = (groups.Count, k);
                    groups.Add(new([.. group.Select(t => t.Elements)], decoder));
                }
            }
            return new SpreadSchedule
            {
                Ordering = WeightPlacement.SpreadOrdering.Of(groups, decoderLayers),
                Sources = [.. layers.Select((layer, j) => layer.Weights.Select(w => at[(j, w.Parts?[0] ?? w.Name)]).ToArray())],
            };
        }
    }

    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<IReadOnlyList<ScheduleLayer>, SpreadSchedule> SpreadSchedules = new();

    /// <summary>Each weight's tier with the fractions placed over the model as a whole (<see cref="WeightPlacement.AssignSpread"/>).</summary>
    private static TierKind[][] SpreadTiers(IReadOnlyList<ScheduleLayer> layers, TierFractions fractions)
    {
        var schedule = SpreadSchedules.GetValue(layers, SpreadSchedule.Of);
        var placed = schedule.Ordering.Assign(fractions);
        return [.. schedule.Sources.Select(sources => sources.Select(s => TierShares.KindOf(placed[s.Group][s.Index])).ToArray())];
    }

    /// <summary>Throws, naming the tier, the bytes needed and allowed, when the plan does not fit the budgets.</summary>
    public void EnsureFits(TierSet tiers)
    {
        foreach (var kind in Enum.GetValues<TierKind>())
        {
            var needed = Total.Of(kind);
            if (needed == 0) continue;
            if (kind == TierKind.Disk && tiers.Disk is null)
                throw new TierBudgetExceededException(kind, needed, 0, "the placement (no disk folder configured)");
            if (needed > tiers.BudgetOf(kind))
                throw new TierBudgetExceededException(kind, needed, tiers.BudgetOf(kind),
                    $"the placement (weights {Weights.Of(kind)}, cache {Cache.Of(kind)}, activations {Activations.Of(kind)}, working {Working.Of(kind)})");
        }
    }
}
