using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Layers;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Placement;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Schedule;

/// <summary>
/// Runs OPT over a block of sequences with weights, KV cache and activations placed over the tiers by a policy,
/// in FlexGen's zig-zag block schedule. Weights are read from the source once, at construction, into their home
/// tiers. The engine does not own the tiers or the copy engine.
/// </summary>
public sealed class OffloadRuntime : IDisposable
{
    private readonly IReadOnlyList<ScheduleLayer> _layers;
    private readonly WeightStore _weights;
    // What remaining batches hold under a policy depends only on the policy and the batches' shapes: the scheduler
    // asks again and again while a budget change is honoured, so each answer is computed once.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(Policy Block, string Shapes), PlacementPlan> _runningPlans = new();

    /// <param name="keepHostCopies">
    /// Keep a CPU copy of every device-resident weight (held on the CPU tier), so that weights leave the device at
    /// once when a smaller budget needs them off it (an elastic job's choice: it costs CPU memory).
    /// </param>
    /// <param name="decodeAttention">How a decoding step attends over a device-resident cache on CUDA.</param>
    /// <summary>
    /// How every runtime is built, for a node and for `generate` and `bench` alike. A run that may face pressure
    /// (<paramref name="elastic"/>) keeps host copies of the device's weights, so that they leave the device at once, when
    /// those take at most half of <paramref name="hostBudget"/> (else weights are copied off when they leave).
    /// </summary>
    /// <param name="startWeights">
    /// Where the weights are loaded, given the bytes <paramref name="policy"/> places on the device, when not where it
    /// places them (null: there): a node whose weights do not fit its GPU budget loads them into host memory, and its first
    /// policy moves them. Host copies are still decided on <paramref name="policy"/>'s placement.
    /// </param>
    public static OffloadRuntime Create(ModelConfig config, IWeightSource source, Policy policy, TierSet tiers, ICopyEngine copies,
        ScalarType dtype, bool elastic, long hostBudget, DecodeAttention decodeAttention = DecodeAttention.Fused,
        Func<long, TierFractions?>? startWeights = null, bool batchInvariant = false, bool cudaGraphs = false)
    {
        var deviceIsCpu = tiers.Device.Device.type == TorchSharp.DeviceType.CPU;
        var deviceWeights = PlanFor(config, source, policy, dtype, deviceIsCpu, 1, 1).Weights.Device;
        var start = startWeights?.Invoke(deviceWeights);
        // Compressed weights keep no host copies (they would have to be compressed copies: not worth it for a fall).
        return new OffloadRuntime(config, source, start is { } s ? policy.Reshaped(policy.GpuBatchSize, policy.NumGpuBatches, s) : policy, tiers,
            copies, dtype, keepHostCopies: elastic && !policy.CompressWeights && deviceWeights <= hostBudget / 2, decodeAttention, batchInvariant,
            cudaGraphs);
    }

    /// <summary>How a decoding step attends over a device-resident cache on CUDA (batched products unless cuDNN's kernel was asked for).</summary>
    public DecodeAttention DecodeAttention { get; }

    /// <summary>
    /// Whether a sequence's bits depend on nothing but its own tokens (<c>batch-invariant</c>): products in calls of fixed
    /// row counts, each prompt attended apart from its padding, decoding by <see cref="InvariantAttention"/> on either side.
    /// </summary>
    public bool BatchInvariant => Architecture.Products.IsBatchInvariant;

    public OffloadRuntime(ModelConfig config, IWeightSource source, Policy policy, TierSet tiers, ICopyEngine copies, ScalarType dtype,
        bool keepHostCopies = false, DecodeAttention decodeAttention = DecodeAttention.Fused, bool batchInvariant = false,
        bool cudaGraphs = false)
    {
        KeepsHostCopies = keepHostCopies;
        DecodeAttention = decodeAttention;
        Config = config;
        Architecture = batchInvariant ? config.Architecture.With(Products.BatchInvariant) : config.Architecture;
        CompressesWeights = policy.CompressWeights;
        Policy = policy;
        Tiers = tiers;
        Copies = copies;
        DType = dtype;
        _elementSize = MemoryTier.ElementSize(dtype);
        DeviceIsCpu = tiers.Device.Device.type == TorchSharp.DeviceType.CPU;
        _layers = StackedWhereOneTier(config, source, Stored(policy));
        WeightPlan = WeightsOnly(policy);
        WeightPlan.EnsureFits(tiers);
        _weights = new WeightStore(_layers, WeightPlan, source, tiers, dtype, keepHostCopies && !CompressesWeights, CompressesWeights);
        if (cudaGraphs) Graphs = new DecodeGraphs(this, capture: !DeviceIsCpu);
    }

    /// <summary>
    /// Decoding layers run as CUDA graphs where they qualify (<see cref="DecodeGraphs"/>); null without <c>cuda-graphs</c>.
    /// On a CPU device the same layer path runs without capturing.
    /// </summary>
    public DecodeGraphs? Graphs { get; }

    /// <summary>
    /// Whether the weights are stored 4-bit compressed (<c>--compress-weight</c>): fixed when the weights are read, so every
    /// later policy and plan of this runtime has the flag as the store has it, whatever a planner's policy says.
    /// </summary>
    public bool CompressesWeights { get; }

    /// <summary>A policy with this runtime's weight compression (see <see cref="CompressesWeights"/>).</summary>
    /// <summary>
    /// The schedule layers, with a decoder layer's Q, K and V stacked into one tensor where <paramref name="policy"/> places
    /// all three on one tier: the placement (and every byte the planner counts) is then the same as with the three apart.
    /// Where they are split over tiers they stay apart, and a step projects with three products there.
    /// </summary>
    private IReadOnlyList<ScheduleLayer> StackedWhereOneTier(ModelConfig config, IWeightSource source, Policy policy)
    {
        var apart = ScheduleLayer.For(config, source);
        var plan = PlacementPlan.ForWeights(apart, policy, _elementSize, DeviceIsCpu);
        var tiers = new Dictionary<string, TierKind>();
        for (var j = 0; j < apart.Count; j++)
            for (var i = 0; i < apart[j].Weights.Count; i++)
                tiers[apart[j].Weights[i].Name] = plan.WeightTiers[j][i];
        return ScheduleLayer.For(config, source, parts => parts.Select(p => tiers[p]).Distinct().Count() == 1);
    }

    /// <summary>
    /// The schedule layers whose tensors this runtime places and moves (Q, K and V stacked where its first policy put them
    /// on one tier): a planner that places weights for it counts these tensors, not the model's tensors apart.
    /// </summary>
    public IReadOnlyList<ScheduleLayer> Layers => _layers;

    private Policy Stored(Policy policy) => policy.CompressWeights == CompressesWeights ? policy : policy with { CompressWeights = CompressesWeights };

    public ModelConfig Config { get; }

    /// <summary>The config's tensors and arithmetic.</summary>
    public ModelArchitecture Architecture { get; }

    /// <summary>Whether device-resident weights have CPU copies (see the constructor).</summary>
    public bool KeepsHostCopies { get; }

    /// <summary>
    /// What a plan holds on each tier once the host copies of its device-resident weights are counted on the CPU.
    /// </summary>
    public Placement.TierBytes WithHostCopies(PlacementPlan plan) =>
        KeepsHostCopies ? plan.Total + Placement.TierBytes.On(TierKind.Cpu, plan.Weights.Device) : plan.Total;

    /// <summary>The policy in force: its fractions place the weights now and the cache and activations of the next block.</summary>
    public Policy Policy { get; private set; }
    public TierSet Tiers { get; }
    public ICopyEngine Copies { get; }
    public ScalarType DType { get; }
    /// <summary>Budget changes on their way to the scheduler: decoding layers of one-batch steps stop for them (see <see cref="ChangeSignal"/>).</summary>
    public ChangeSignal Changes { get; } = new();
    /// <summary>A timeline to record copies and compute into (CUDA only); inactive unless started.</summary>
    public Cuda.CudaTimeline? Timeline { get; set; }
    /// <summary>Where each weight lives and what the weights (with their device working buffers) hold per tier.</summary>
    public PlacementPlan WeightPlan { get; private set; }
    /// <summary>The plan of the last block run (or being run).</summary>
    public PlacementPlan? LastPlan { get; private set; }

    private bool DeviceIsCpu { get; }

    private readonly long _elementSize;

    // A budget change asks for the weights' placement under a policy on its way to being honoured (to fit what is left
    // of a block, to re-place): computed once per weight fractions, not per call.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(ActorInfer.Planning.TierFractions, bool Spread), PlacementPlan> _weightPlans = new();

    private PlacementPlan WeightsOnly(Policy policy) =>
        _weightPlans.GetOrAdd((policy.Weights, policy.SpreadWeights), _ => PlacementPlan.ForWeights(_layers, Stored(policy), _elementSize, DeviceIsCpu));

    /// <summary>
    /// The placement a policy would get for a block of full GPU batches of the given lengths, without loading
    /// anything: what the planner's choice costs in this runtime's whole-tensor placement, working buffers included.
    /// </summary>
    public static PlacementPlan PlanFor(ModelConfig config, IWeightSource source, Policy policy, ScalarType dtype, bool deviceIsCpu,
        int promptLength, int generationLength)
    {
        var layers = ScheduleLayer.For(config, source);
        var shapes = Enumerable.Range(0, policy.NumGpuBatches)
            .Select(_ => new BatchShape(policy.GpuBatchSize, promptLength, promptLength + generationLength)).ToArray();
        return PlacementPlan.ForBlock(layers, config, policy, MemoryTier.ElementSize(dtype), shapes, deviceIsCpu);
    }

    /// <summary>What a block of full GPU batches of this geometry and length would hold per tier, weights included.</summary>
    public PlacementPlan PlanBlock(int gpuBatchSize, int numGpuBatches, int paddedLength, int capacity) =>
        PlanBlock(Policy.Reshaped(gpuBatchSize, numGpuBatches),
            paddedLength, capacity);

    /// <summary>What a block of full GPU batches would hold per tier under another policy (its weight fractions too).</summary>
    public PlacementPlan PlanBlock(Policy policy, int paddedLength, int capacity)
    {
        var shapes = Enumerable.Range(0, policy.NumGpuBatches).Select(_ => new BatchShape(policy.GpuBatchSize, paddedLength, capacity)).ToArray();
        return PlacementPlan.ForBlock(_layers, Config, Stored(policy), _elementSize, shapes, DeviceIsCpu);
    }

    /// <summary>
    /// What a running block's remaining batches (none, or no block) hold per tier once the weights follow
    /// <paramref name="policy"/>'s fractions: the batches keep the cache fractions they were placed with.
    /// </summary>
    public Placement.TierBytes PlanRunning(BlockSession? session, IReadOnlyCollection<int> remaining, Policy policy)
    {
        if (session is null || remaining.Count == 0)
            return WithHostCopies(WeightsOnly(policy));
        var shapes = remaining.Select(session.Shape).ToArray();
        var placed = session.Policy;
        var block = Stored(placed.Reshaped(shapes.Max(s => s.Size), shapes.Length, policy.Weights));
        var key = (block, string.Join(";", shapes.Select(s => $"{s.Size},{s.PaddedLength},{s.Capacity}")));
        return WithHostCopies(_runningPlans.GetOrAdd(key, k => PlacementPlan.ForBlock(_layers, Config, k.Block, _elementSize, shapes, DeviceIsCpu)));
    }

    /// <summary>
    /// Makes <paramref name="policy"/> the policy in force: weights whose tier changes under its fractions move
    /// (off the device first), within the running block's step at a layer boundary when one runs; the cache and
    /// activations of later blocks follow its fractions. A move that finds no room on a tier throws; every weight
    /// then still has one home (those moved so far in their new one), and a later call moves the rest.
    /// </summary>
    /// <returns>The weight bytes moved.</returns>
    /// <param name="moved">Called after each weight moved.</param>
    private bool _weightsUnsettled;

    public long Replace(Policy policy, BlockSession? running = null, Action? moved = null)
    {
        var plan = WeightsOnly(policy);
        if (plan.Weights.Disk > 0 && Tiers.Disk is null)
            throw new TierBudgetExceededException(TierKind.Disk, plan.Weights.Disk, 0, "the weights (no disk folder configured)");
        long bytes = 0;
        // After a re-placement that failed half way the weights are where the moves left them, not where WeightPlan says:
        // the next one compares every weight's home with its target.
        if (_weightsUnsettled || _weights.GrownBytes > 0 || !plan.WeightTiers.Zip(WeightPlan.WeightTiers).All(p => p.First.SequenceEqual(p.Second)))
        {
            _weightsUnsettled = true;
            bytes = running is not null ? running.ReplaceWeights(plan, moved) : _weights.Replace(plan, Tiers, Copies, moved);
            _weightsUnsettled = false;
        }
        Policy = Stored(policy);
        WeightPlan = plan;
        return bytes;
    }

    /// <summary>
    /// While the running block goes on under the placement in force, lets the weights that <paramref name="target"/> places on
    /// the device move there as the block's layers stream them in, keeping at most <paramref name="allowance"/> bytes more on
    /// the device than the placement in force (see <see cref="WeightStore.GrowTowards"/>); null stops it. The next
    /// <see cref="Replace"/> settles every weight where its policy puts it (those kept leave the device at once: their CPU
    /// homes stay as host copies).
    /// </summary>
    public void GrowTowards(Policy? target, long allowance) =>
        _weights.GrowTowards(target is null || !CanGrowTowards(target) ? null : WeightsOnly(target), allowance);

    /// <summary>Whether <see cref="GrowTowards"/> can grow the weights toward <paramref name="target"/> (not for compressed weights).</summary>
    public bool CanGrowTowards(Policy target) => !target.CompressWeights && !CompressesWeights;

    /// <summary>
    /// Lets weights kept on the device by <see cref="GrowTowards"/> go back to their host copies until at most
    /// <paramref name="allowance"/> bytes of them are left (within the running block's step at a layer boundary when one
    /// runs): nothing is copied, the placement in force and the growth target stay.
    /// </summary>
    /// <returns>The bytes let go.</returns>
    public long TrimGrowth(long allowance, BlockSession? running = null) =>
        _weights.GrownBytes <= allowance ? 0
        : running is not null ? running.TrimGrownWeights(WeightPlan, allowance) : _weights.TrimGrowth(WeightPlan, allowance);

    /// <summary>Weight bytes kept on the device by <see cref="GrowTowards"/> beyond the placement in force.</summary>
    public long GrownBytes => _weights.GrownBytes;

    /// <summary>The block's GPU batches: consecutive runs of <see cref="Policy.GpuBatchSize"/> sequences, the last maybe smaller.</summary>
    public IReadOnlyList<IReadOnlyList<SequenceState>> SplitBatches(IReadOnlyList<SequenceState> block) => SplitBatches(block, Policy);

    private static IReadOnlyList<IReadOnlyList<SequenceState>> SplitBatches(IReadOnlyList<SequenceState> block, Policy Policy)
    {
        if (block.Count == 0) throw new ArgumentException("a block needs at least one sequence");
        if (block.Count > Policy.BlockSize)
            throw new ArgumentException($"a block holds at most {Policy.BlockSize} sequences ({Policy.NumGpuBatches} x {Policy.GpuBatchSize}), got {block.Count}");
        return block.Chunk(Policy.GpuBatchSize).Select(c => (IReadOnlyList<SequenceState>)c).ToArray();
    }

    /// <summary>The placement and peak bytes per tier of running this block, computed without allocating anything.</summary>
    public PlacementPlan Plan(IReadOnlyList<SequenceState> block) => Plan(block, Policy);

    private PlacementPlan Plan(IReadOnlyList<SequenceState> block, Policy policy) =>
        PlacementPlan.ForBlock(_layers, Config, Stored(policy), _elementSize, Shapes(block, policy), DeviceIsCpu);

    private static IReadOnlyList<BatchShape> Shapes(IReadOnlyList<SequenceState> block, Policy policy)
    {
        var remaining = block.Max(s => s.Request.MaxTokens - s.OutputIds.Count);
        return SplitBatches(block, policy).Select(batch =>
        {
            var padded = batch.Max(s => BatchGenerator.Context(s).Count);
            return new BatchShape(batch.Count, padded, padded + remaining);
        }).ToArray();
    }

    /// <summary>
    /// The buffers a block of these sequences would take from the CPU tier under <paramref name="policy"/> (the runtime's
    /// own when null) in GPU batches of <paramref name="gpuBatchSize"/>: its cache homes there, and the prefill's hidden
    /// states stored there (one per GPU batch, and the one being computed). Computed as <see cref="OpenBlock"/> places them,
    /// without allocating anything.
    /// </summary>
    public IReadOnlyList<HostBufferNeed> HostBuffersFor(IReadOnlyList<SequenceState> block, Policy? policy = null, int? gpuBatchSize = null)
    {
        if (block.Count == 0) return [];
        policy = Stored(policy ?? Policy);
        if (gpuBatchSize is { } size) policy = policy.Reshaped(size, (block.Count + size - 1) / size);
        var plan = Plan(block, policy);
        var shapes = Shapes(block, policy);
        var needs = new List<HostBufferNeed>();
        for (var k = 0; k < shapes.Count; k++)
        {
            long[] cache = [shapes[k].Size, Config.NumKeyValueHeads, shapes[k].Capacity, Config.HeadDim];
            var homes = Enumerable.Range(0, Config.NumHiddenLayers).Count(l => plan.CacheTier(l, new GpuBatchIndex(k)) == TierKind.Cpu);
            if (homes > 0)
                foreach (var (shape, dtype) in policy.CompressCache ? CompressedKvHome.Buffers(cache, DType) : KvHome.Buffers(cache, DType))
                    needs.Add(new HostBufferNeed(shape, dtype, homes));
            if (Enumerable.Range(0, _layers.Count - 1).Any(j => plan.ActivationTier(new LayerIndex(j), new GpuBatchIndex(k)) == TierKind.Cpu))
                needs.Add(new HostBufferNeed([shapes[k].Size, shapes[k].PaddedLength, Config.HiddenSize], DType, k == 0 ? 2 : 1));
        }
        return needs;
    }

    /// <summary>Generates for every sequence of the block until each has finished, as <see cref="BatchGenerator.Run"/> does.</summary>
    /// <param name="stepDone">Called after each step (0 = prefill) once its tokens are chosen, for timing and telemetry.</param>
    public void Generate(IReadOnlyList<SequenceState> block, Func<IReadOnlyList<int>, string> decode, Action<TokenStep>? stepDone = null)
    {
        using var session = OpenBlock(block, decode);
        var step = new TokenStep(0);
        session.RunStep(step);
        stepDone?.Invoke(step);
        while (block.Any(s => !s.IsFinished))
        {
            step = step.Next();
            session.RunStep(step);
            stepDone?.Invoke(step);
        }
    }

    /// <summary>
    /// Places a block (checks its plan against the budgets, allocates each GPU batch's cache in its home tier) for a
    /// driver that runs it position by position, such as the layer actors.
    /// </summary>
    /// <param name="gpuBatchSize">The block's GPU batch size when the driver chose one other than the policy's
    /// (the placement fractions stay the policy's; weights were placed once, at construction).</param>
    public BlockSession OpenBlock(IReadOnlyList<SequenceState> block, Func<IReadOnlyList<int>, string> decode, int? gpuBatchSize = null)
    {
        var policy = gpuBatchSize is { } size
            ? Policy.Reshaped(size, (block.Count + size - 1) / size)
            : Policy;
        var plan = Plan(block, policy);
        plan.EnsureFits(Tiers);
        // Weights that growth kept on the device beyond the placement stay for this block where it has room for them beside
        // its plan; else they leave for their host copies now (nothing is copied).
        if (_weights.GrownBytes > 0 && plan.Total.Of(TierKind.Device) + _weights.GrownBytes > Tiers.BudgetOf(TierKind.Device))
            _weights.Replace(WeightPlan, Tiers, Copies);
        LastPlan = plan;
        var shapes = Shapes(block, policy);
        var batches = SplitBatches(block, policy)
            .Select((seqs, k) => new GpuBatch(new GpuBatchIndex(k), seqs,
                new BatchLayout(seqs.Select(s => BatchGenerator.Context(s).Count).ToArray()), shapes[k].Capacity))
            .ToArray();
        try
        {
            foreach (var batch in batches)
                for (var l = 0; l < Config.NumHiddenLayers; l++)
                {
                    long[] shape = [batch.Layout.BatchSize, Config.NumKeyValueHeads, batch.Capacity, Config.HeadDim];
                    var what = batch.CacheName(l);
                    var tier = plan.CacheTier(l, batch.Index);
                    batch.Cache.Add(policy.CompressCache ? new CompressedKvHome(Tiers, tier, shape, DType, what) : new KvHome(Tiers, tier, shape, DType, what));
                }
            return new BlockSession(new BlockStep(this, _layers, _weights, plan, batches, decode), batches, _layers.Count, policy, shapes);
        }
        catch
        {
            foreach (var b in batches) b.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        Graphs?.Dispose();
        _weights.Dispose();
        // The job is over: buffers the CPU tier kept for reuse go too.
        Tiers.Cpu.Trim();
    }
}
