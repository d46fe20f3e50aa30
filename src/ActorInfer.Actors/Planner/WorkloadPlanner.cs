using System.Collections.Concurrent;
using ActorInfer.Actors.Memory;
using ActorInfer.Planning;
using ActorInfer.Runtime.Placement;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using Tier = ActorInfer.Actors.Memory.Tier;

namespace ActorInfer.Actors.Planner;

/// <summary>
/// A node's planner: for a set of budgets and the workload of the next block (a <see cref="WorkloadBucket"/>), the
/// policy search over the whole space (the LP over the nine fractions, the GPU batch size, the number of GPU batches,
/// CPU attention, and a compressed cache where allowed), corrected to the runtime's whole-tensor placement
/// (<see cref="FittingSearch"/>) and ranked with the node's hardware profile. Answers are cached per (budgets, bucket).
/// On a GPU node a table per bucket is compiled in the background (the job's static compilation) over device budgets
/// a factor apart, so a budget change at run time is answered by a lookup, with the entry at or below the budget.
/// On a CPU node every tensor stays in host memory, the compute tier: only the block geometry is searched.
/// </summary>
public sealed class WorkloadPlanner : IPolicyPlanner
{
    private const long SmallestTableBudget = 256L << 20;
    private readonly OffloadRuntime _runtime;
    private readonly Configuration.PlannerSettings _settings;
    private readonly Tier _deviceBudget;
    private readonly long _deviceContextBytes;
    private readonly long _deviceTotal;
    private readonly ModelSpec _model;
    private readonly SearchOptions _options;
    private readonly ConcurrentDictionary<(WorkloadBucket Bucket, FittingSearch.Budget Budget), BlockPolicy?> _answers = new();
    // Answers and raised policies are kept per exact budget, and budgets from telemetry and the arbiter take ever new
    // values over a node's life: each cache is emptied once it holds this many (a search then runs again, the same).
    private readonly int _mostKept;
    private int _answersKept;
    private int _raisedKept;
    private readonly ConcurrentDictionary<WorkloadBucket, BudgetTable> _tables = new();

    /// <param name="hardware">The profile the cost model ranks policies with.</param>
    /// <param name="hardwareSource">Where the profile came from (measured here, a file, a built-in), for logs and /admin/state.</param>
    /// <param name="deviceBudget">The budget governing the runtime's device tier: the GPU's, or host memory's on a CPU node.</param>
    /// <param name="deviceContextBytes">On a GPU node, the device memory in use before the node's tensors (the CUDA context).</param>
    /// <param name="deviceTotal">On a GPU node, the device's memory: the largest budget the compiled tables cover.</param>
    public WorkloadPlanner(OffloadRuntime runtime, HardwareProfile hardware, string hardwareSource, Configuration.PlannerSettings settings,
        int maxGpuBatchSize, int maxGpuBatches, Tier deviceBudget, long deviceContextBytes = 0, long deviceTotal = 0, int mostKept = 4096)
    {
        if (mostKept < 1) throw new ArgumentOutOfRangeException(nameof(mostKept), mostKept, "at least one answer must be kept");
        _mostKept = mostKept;
        _runtime = runtime;
        _settings = settings;
        _deviceBudget = deviceBudget;
        _deviceContextBytes = deviceContextBytes;
        _deviceTotal = deviceTotal;
        Hardware = hardware;
        HardwareSource = hardwareSource;
        var c = runtime.Config;
        // The runtime's own tensors (Q, K and V stacked where it stacked them): the search's realizable placements are then
        // the runtime's, and its corrections converge (with the tensors apart, a runtime that stacked them placed fewer
        // weights on the device than the search counted, and OPT-30B found no policy under a 35.82 GiB share).
        _model = ModelSpecs.From(c, (int)MemoryTier.ElementSize(runtime.DType), runtime.Layers);
        Buckets = new BucketRule(c.MaxPositionEmbeddings, settings.WholeContext);
        DefaultBucket = Buckets.For(512, 32);
        var options = new SearchOptions
        {
            MaxBlockSize = settings.MaxBlockSize, MaxGpuBatchSize = maxGpuBatchSize, MaxNumGpuBatches = maxGpuBatches,
            CpuAttention = OnCpuNode ? false : null,
            // The runtime's weights are stored as they are: compressed ones are priced (and placed) compressed.
            CompressWeights = runtime.CompressesWeights,
            SpreadWeights = settings.SpreadWeights,
        };
        _options = options;
    }

    public HardwareProfile Hardware { get; }
    public string HardwareSource { get; }

    /// <summary>The model as the search counts it: its tensors as the runtime holds them.</summary>
    internal ModelSpec Model => _model;
    public BucketRule Buckets { get; }

    /// <summary>The bucket planned before any request is queued (a prompt of 512 tokens and 32 to generate, within the context).</summary>
    public WorkloadBucket DefaultBucket { get; }

    private bool OnCpuNode => _deviceBudget == Tier.Cpu;

    public BlockPolicy? Plan(TierBudgets budgets) => Plan(budgets, DefaultBucket);

    public BlockPolicy? Plan(TierBudgets budgets, WorkloadBucket bucket)
    {
        if (Usable(budgets) is not { } budget) return null;
        if (!OnCpuNode) CompileTable(bucket, budget);
        if (_tables.TryGetValue(bucket, out var table) && table.Covers(budget) && !_answers.ContainsKey((bucket, budget)) &&
            table.TryFor(budget.Gpu, out var compiled))
            return compiled;
        return _answers.GetOrAdd((bucket, budget), k =>
        {
            Interlocked.Increment(ref _searches);
            Keep(_answers, ref _answersKept);
            return Search(k.Bucket, k.Budget);
        });
    }

    private int _searches;

    /// <summary>Counts an answer about to be added, emptying <paramref name="cache"/> first once it holds the most kept.</summary>
    private void Keep<TKey, TValue>(ConcurrentDictionary<TKey, TValue> cache, ref int kept) where TKey : notnull
    {
        if (Interlocked.Increment(ref kept) <= _mostKept) return;
        cache.Clear();
        Interlocked.Exchange(ref kept, 1);
    }

    /// <summary>Answers and raised policies kept now (each cache at most the limit given at construction).</summary>
    internal (int Answers, int Raised) Kept => (_answers.Count, _raised.Count);

    /// <summary>The searches run to answer <see cref="Plan(TierBudgets, WorkloadBucket)"/> (not the compiled tables' own).</summary>
    internal int Searches => Volatile.Read(ref _searches);

    /// <summary>Completes once the bucket's table is compiled (at once on a CPU node, where none is).</summary>
    public Task Compiled(WorkloadBucket bucket) => _tables.TryGetValue(bucket, out var t) ? t.Completion : Task.CompletedTask;

    /// <summary>
    /// The device tier's bytes for a block of this geometry with every weight, the cache and the activations on the device,
    /// for sequences of <paramref name="bucket"/> (by default the whole context, which holds any bucket).
    /// </summary>
    public long BytesFor(int gpuBatchSize, int numGpuBatches, WorkloadBucket? bucket = null)
    {
        var b = bucket ?? Buckets.Whole;
        var all = TierFractions.AllGpu;
        var policy = new Policy(gpuBatchSize, numGpuBatches, all, all, all) { CpuAttention = false, CompressWeights = _runtime.CompressesWeights };
        return _runtime.WithHostCopies(_runtime.PlanBlock(policy, b.PromptLength, b.Capacity)).Device;
    }

    /// <summary>
    /// The search's count of a block's device bytes (the cost model's, before the correction to the runtime's placement)
    /// over the placement's own, as far as a budget with no answer compiled yet allows for it: 3.0 to 4.5% for OPT-6.7B
    /// on an H100's profile at 48 to 128 sequences, and the allocator's reserve for the buffers on top (1.6% at 80 x 1
    /// all on the GPU).
    /// </summary>
    internal const double SearchCountMargin = 0.07;

    /// <summary>
    /// The least budget of the device tier whose answer holds a block of <paramref name="sequences"/> of
    /// <paramref name="bucket"/>, whose placement with every tensor on the device takes <paramref name="bytes"/> (what
    /// <see cref="BytesFor"/> counts), and whether it is final. On a CPU node the bytes themselves (final). On a GPU node
    /// the CUDA context and the allocator's allowance come on top, and so does the way a budget is answered: its usable
    /// bytes are rounded down, the bucket's compiled table answers with its entry at or below them (up to one table step
    /// less), and the search counts a block's bytes above its placement. So the usable part asked for is the least table
    /// entry whose compiled answer holds the sequences (final); where the entries from the bytes up are not all searched
    /// yet, the bytes with <see cref="SearchCountMargin"/> and a table step on top (not final: asked again later, the
    /// table answers). A budget of exactly the block's bytes and reserve got the next smaller block.
    /// </summary>
    public (long Budget, bool Final) BudgetHolding(int sequences, WorkloadBucket bucket, long bytes)
    {
        if (OnCpuNode || bytes <= 0) return (Math.Max(0, bytes), true);
        var entries = TableEntries;
        var at = Array.BinarySearch(entries, bytes);
        if (at < 0) at = ~at;
        // Every table's entries are these (BudgetTable.Start).
        if (_tables.TryGetValue(bucket, out var table))
            for (var i = at; i < entries.Length && table.TryAt(i, out var answer); i++)
                if (answer is { } a && (long)a.GpuBatchSize * a.NumGpuBatches >= sequences)
                    return (DeviceReserve.BudgetFor(entries[i], _deviceContextBytes), true);
        var usable = RoundUp((long)Math.Ceiling(bytes * (1 + SearchCountMargin) * _settings.TableStep));
        return (DeviceReserve.BudgetFor(usable, _deviceContextBytes), false);
    }

    /// <summary>
    /// The usable device budgets a compiled table answers, ascending: from what the device leaves after the context and
    /// the allowance, down by the table step to the smallest table budget (none without a device total).
    /// </summary>
    private long[] TableEntries => _tableEntries ??= ComputeTableEntries();

    private long[]? _tableEntries;

    private long[] ComputeTableEntries()
    {
        if (_deviceTotal <= 0) return [];
        var top = _deviceTotal - _deviceContextBytes - DeviceReserve.AllowanceFor(_deviceTotal);
        var points = new List<long>();
        for (double b = top; b >= SmallestTableBudget; b /= _settings.TableStep) points.Add(RoundDown((long)b));
        return points.Distinct().Order().ToArray();
    }

    /// <summary>
    /// The budgets the search may use: on a GPU node the GPU budget less the CUDA context and the allocator's allowance
    /// (a budget bounds what the device reports), and the CPU budget (the host's available memory when none is known),
    /// each rounded down by at most 1/512, so that nearby budgets share their answers; on a CPU node the host budget.
    /// Null: no room at all.
    /// </summary>
    private FittingSearch.Budget? Usable(TierBudgets budgets)
    {
        // A CPU node's answers are searched per budget (no table): its budget is taken as it is.
        if (OnCpuNode) return budgets.Cpu <= 0 ? null : new FittingSearch.Budget(budgets.Cpu, budgets.Cpu, 1);
        if (budgets.Gpu <= 0) return null;
        var gpu = RoundDown(budgets.Gpu - _deviceContextBytes - DeviceReserve.AllowanceFor(budgets.Gpu));
        if (gpu <= 0) return null;
        var cpu = RoundDown(budgets.Cpu > 0 ? budgets.Cpu : MachineMemory.HostAvailable());
        var disk = _runtime.Tiers.Disk is null ? 1 : Math.Max(1, RoundDown(budgets.Disk));
        return new FittingSearch.Budget(gpu, cpu, disk) { GpuBufferReserve = DevicePeak.AllocatorReserveShare };
    }

    /// <summary>Down to the bytes' nine leading binary digits (at most 1/512 less).</summary>
    internal static long RoundDown(long bytes)
    {
        if (bytes <= 512) return bytes;
        var shift = 63 - System.Numerics.BitOperations.LeadingZeroCount((ulong)bytes) - 8;
        return bytes >> shift << shift;
    }

    /// <summary>Up to the least number of nine leading binary digits at or above the bytes (what <see cref="RoundDown"/> leaves as it is).</summary>
    internal static long RoundUp(long bytes)
    {
        var down = RoundDown(bytes);
        if (down == bytes) return bytes;
        var shift = 63 - System.Numerics.BitOperations.LeadingZeroCount((ulong)bytes) - 8;
        return down + (1L << shift);
    }

    private BlockPolicy? Search(WorkloadBucket bucket, FittingSearch.Budget budget) =>
        OnCpuNode ? SearchGeometry(bucket, budget.Gpu) : SearchPlacement(bucket, budget);

    /// <summary>
    /// On a CPU node: every geometry within the bounds whose placement in this runtime fits the host budget, ranked by
    /// the cost model (the runtime's own placement decides what fits: the cost model's memory count is for offloading).
    /// </summary>
    private BlockPolicy? SearchGeometry(WorkloadBucket bucket, long host)
    {
        var workload = new Workload(bucket.PromptLength, bucket.GenerationLength);
        var all = TierFractions.AllGpu;
        (Policy Policy, double Throughput)? best = null;
        var maxSize = Math.Min(_options.MaxGpuBatchSize ?? _options.MaxBlockSize, _options.MaxBlockSize);
        // From the most GPU batches down: on a tie the block with more batches (more sequences, dropped at a finer grain).
        for (var batches = Math.Min(_options.MaxNumGpuBatches ?? _options.MaxBlockSize, _options.MaxBlockSize); batches >= 1; batches--)
        {
            bool Fits(int size) =>
                _runtime.WithHostCopies(_runtime.PlanBlock(new Policy(size, batches, all, all, all) { CpuAttention = false },
                    bucket.PromptLength, bucket.Capacity)).Device <= host;
            var most = Math.Min(maxSize, _options.MaxBlockSize / batches);
            if (most < 1 || !Fits(1)) continue;
            // The footprint grows with the batch size: the largest that fits, by bisection.
            int low = 1, high = most;
            while (low < high)
            {
                var mid = (low + high + 1) / 2;
                if (Fits(mid)) low = mid;
                else high = mid - 1;
            }
            var policy = new Policy(low, batches, all, all, all) { CpuAttention = false, CompressWeights = _runtime.CompressesWeights };
            var throughput = Throughput(workload, policy);
            if (best is null || throughput > best.Value.Throughput * (1 + 1e-9)) best = (policy, throughput);
        }
        return best is { } chosen
            ? new BlockPolicy(chosen.Policy.GpuBatchSize, chosen.Policy.NumGpuBatches, Describe(chosen.Policy))
            {
                Runtime = chosen.Policy, Bucket = bucket, PredictedTokensPerSecond = chosen.Throughput,
            }
            : null;
    }

    private double Throughput(Workload workload, Policy policy)
    {
        try
        {
            return CostModel.Evaluate(_model, workload, policy, Hardware).ThroughputTokensPerSecond;
        }
        catch (ArgumentException)
        {
            // A geometry the cost model cannot price ranks last; it still runs if nothing else fits.
            return 0;
        }
    }

    private BlockPolicy? SearchPlacement(WorkloadBucket bucket, FittingSearch.Budget budget)
    {
        var workload = new Workload(bucket.PromptLength, bucket.GenerationLength);
        SearchResult? best = null;
        foreach (var compress in _settings.CompressCache ? new[] { false, true } : [false])
        {
            // A compressed cache is attended on the GPU, as FlexGen does: the cost model does not price expanding it on the CPU.
            var options = compress ? _options with { CompressCache = true, CpuAttention = false } : _options;
            try
            {
                var found = FittingSearch.Find(_model, workload, Hardware, options, budget,
                    policy => _runtime.WithHostCopies(_runtime.PlanBlock(policy, bucket.PromptLength, bucket.Capacity)));
                if (best is null || found.Estimate.ThroughputTokensPerSecond > best.Estimate.ThroughputTokensPerSecond) best = found;
            }
            catch (Exception ex) when (ex is NoFeasiblePolicyException or PlacementDoesNotFitException or ArgumentException)
            {
                // Nothing fits this way; the other way (or none) may.
            }
        }
        if (best is null) return null;
        var p = best.Policy;
        return new BlockPolicy(p.GpuBatchSize, p.NumGpuBatches, Describe(p))
        {
            Runtime = p,
            Bucket = bucket,
            PredictedTokensPerSecond = best.Estimate.ThroughputTokensPerSecond,
        };
    }

    private readonly ConcurrentDictionary<(Policy Firm, WorkloadBucket Bucket, FittingSearch.Budget Budget), BlockPolicy> _raised = new();

    /// <summary>
    /// The firm policy's geometry, cache, activations and attention with the weights' device share raised, in whole
    /// percents taken from the disk first, then from the CPU, to the largest share whose placement fits the budgets. On a
    /// CPU node (no placement) and where no more fits, the firm policy itself. Answers are cached per (firm, budgets).
    /// </summary>
    public BlockPolicy Raise(BlockPolicy firm, TierBudgets budgets)
    {
        if (OnCpuNode || firm.Runtime is not { } p || firm.Bucket is not { } bucket || Usable(budgets) is not { } budget) return firm;
        return _raised.GetOrAdd((p, bucket, budget), k =>
        {
            Keep(_raised, ref _raisedKept);
            var from = (int)Math.Ceiling(p.Weights.Gpu * 100 - 1e-6);
            Policy With(int percent)
            {
                var gpu = percent / 100.0;
                var disk = Math.Max(0, p.Weights.Disk - (gpu - p.Weights.Gpu));
                return p.Reshaped(p.GpuBatchSize, p.NumGpuBatches, new TierFractions(gpu, 1 - gpu - disk, disk));
            }
            bool Fits(int percent)
            {
                var held = _runtime.WithHostCopies(_runtime.PlanBlock(With(percent), k.Bucket.PromptLength, k.Bucket.Capacity));
                return held.Device <= k.Budget.Gpu && held.Cpu <= k.Budget.Cpu && held.Disk <= k.Budget.Disk;
            }
            int low;
            if (p.SpreadWeights)
            {
                // Spread over the model, the layers differ until every layer holds a tensor kind, and the buffer of the layer
                // with the most off the device shrinks only then: the bytes fall where a kind completes, so the shares are tried
                // from all of them down, and the first that fits is the largest.
                low = Enumerable.Range(from + 1, Math.Max(0, 100 - from)).Reverse().FirstOrDefault(Fits);
                if (low == 0) return firm;
            }
            else
            {
                if (from >= 100 || !Fits(from + 1)) return firm;
                // By FlexGen's rule the device's bytes grow with the weights' share: the largest share that fits, by bisection.
                low = from + 1;
                var high = 100;
                while (low < high)
                {
                    var mid = (low + high + 1) / 2;
                    if (Fits(mid)) low = mid;
                    else high = mid - 1;
                }
            }
            var raised = With(low);
            return firm with
            {
                Placement = Describe(raised), Runtime = raised,
                PredictedTokensPerSecond = Throughput(new Workload(k.Bucket.PromptLength, k.Bucket.GenerationLength), raised),
            };
        });
    }

    private static string Describe(Policy p) =>
        $"weights {p.Weights}, cache {p.Cache}, activations {p.Activations}" + (p.CpuAttention ? ", cpu attention" : "") +
        (p.CompressCache ? ", compressed cache" : "") + (p.CompressWeights ? ", compressed weights" : "") +
        (p.SpreadWeights ? ", weights spread" : "");

    private void CompileTable(WorkloadBucket bucket, FittingSearch.Budget seen)
    {
        if (_deviceTotal <= 0) return;
        // The disk budget follows the data folder's free space (telemetry), which falls as the node writes: the table is
        // compiled for a sixteenth less, so that the megabytes written since do not make a budget change a search of its own.
        var compileFor = seen.Disk > 1 ? seen with { Disk = seen.Disk - seen.Disk / 16 } : seen;
        var table = _tables.GetOrAdd(bucket, b => BudgetTable.Start(this, b, compileFor));
        // A table compiled for more CPU or disk than the budgets now give, or for much less CPU memory, is recompiled for them.
        if (table.Completion.IsCompleted && (!table.Covers(seen) || table.Cpu < seen.Cpu * 0.9))
            _tables.TryUpdate(bucket, BudgetTable.Start(this, bucket, compileFor), table);
    }

    /// <summary>
    /// Answers at device budgets a factor apart, for one bucket and the CPU and disk budgets it was compiled for. Its
    /// entries are searched in the background from the budget at the start downwards (a fall is what must be answered
    /// at once), then upwards; each answers as soon as it is searched.
    /// </summary>
    private sealed class BudgetTable
    {
        private readonly long[] _device;
        private readonly BlockPolicy?[] _answers;
        private readonly int[] _searched;

        private BudgetTable(long[] device, long cpu, long disk)
        {
            _device = device;
            _answers = new BlockPolicy?[device.Length];
            _searched = new int[device.Length];
            Cpu = cpu;
            Disk = disk;
        }

        public long Cpu { get; }
        public long Disk { get; }

        /// <summary>Completes once every entry is searched.</summary>
        public Task Completion { get; private set; } = Task.CompletedTask;

        public static BudgetTable Start(WorkloadPlanner planner, WorkloadBucket bucket, FittingSearch.Budget seen)
        {
            var device = planner.TableEntries;
            var table = new BudgetTable(device, seen.Cpu, seen.Disk);
            var below = device.Select((d, i) => (d, i)).Where(e => e.d <= seen.Gpu).Select(e => e.i).Reverse();
            var above = device.Select((d, i) => (d, i)).Where(e => e.d > seen.Gpu).Select(e => e.i);
            var order = below.Concat(above).ToArray();
            // A quarter of the cores: the tensor thread's host work (kernel launches, CPU attention) must not wait for it.
            // Entries are taken one at a time in that order.
            var options = new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, Environment.ProcessorCount / 4) };
            table.Completion = Task.Run(() => Parallel.ForEach(
                System.Collections.Concurrent.Partitioner.Create(order, System.Collections.Concurrent.EnumerablePartitionerOptions.NoBuffering),
                options, i =>
                {
                    table._answers[i] = planner.Search(bucket, seen with { Gpu = device[i] });
                    Volatile.Write(ref table._searched[i], 1);
                }));
            return table;
        }

        public bool Covers(FittingSearch.Budget budget) =>
            _device.Length > 0 && budget.Cpu >= Cpu && budget.Disk >= Disk && budget.Gpu >= _device[0];

        /// <summary>The answer at entry <paramref name="index"/>, when it is searched.</summary>
        public bool TryAt(int index, out BlockPolicy? answer)
        {
            answer = null;
            if (Volatile.Read(ref _searched[index]) == 0) return false;
            answer = _answers[index];
            return true;
        }

        /// <summary>The answer at the largest entry at or below <paramref name="device"/>, when that entry is searched.</summary>
        public bool TryFor(long device, out BlockPolicy? answer)
        {
            answer = null;
            var at = Array.BinarySearch(_device, device);
            if (at < 0) at = ~at - 1;
            if (at < 0 || Volatile.Read(ref _searched[at]) == 0) return false;
            answer = _answers[at];
            return true;
        }
    }
}
