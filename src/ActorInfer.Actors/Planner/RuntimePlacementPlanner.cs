using ActorInfer.Actors.Memory;
using ActorInfer.Planning;
using ActorInfer.Runtime.Schedule;
using Tier = ActorInfer.Actors.Memory.Tier;

namespace ActorInfer.Actors.Planner;

/// <summary>
/// The planner of a running offloading runtime: for each set of budgets, the best policy whose placement in this
/// runtime (whole tensors, working buffers, exactly as the tiers will account them) fits. Candidates keep the
/// base policy's cache and activation fractions and CPU-attention choice, move weights off the device in steps of
/// 10 points (to the CPU; a disk share stays on disk), and for each number of GPU batches up to the base's, take the
/// largest GPU batch size up to the base's that fits; the cost model (with the machine's hardware profile) ranks them
/// all, so a block may be one large GPU batch where the per-batch cost outweighs the overlap of several. Null when not even one
/// sequence fits with every weight off the device.
/// Every candidate's footprint is computed once (a placement does not depend on the budgets) and kept; the whole
/// table is filled in the background from construction on (the job's static compilation), and with it the search's
/// answer at every distinct device footprint: planning for a budget change at run time is then a bisection, not a
/// search (a search where the CPU budget is below some candidate's, or before the compilation ends).
/// </summary>
public sealed class RuntimePlacementPlanner : IPolicyPlanner
{
    private readonly OffloadRuntime _runtime;
    private readonly Policy _base;
    private readonly int _capacity;
    private readonly Tier _deviceBudget;
    private readonly ModelSpec _model;
    private readonly Workload _workload;
    private readonly HardwareProfile _hardware;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(TierFractions Weights, int Size, int Batches), Runtime.Placement.TierBytes> _footprints = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Policy, double> _scores = new();

    /// <param name="basePolicy">The largest geometry, and the fractions to start from (the job's own policy).</param>
    /// <param name="promptLength">The padded prompt length a block is planned for.</param>
    /// <param name="capacity">The cache capacity per sequence a block is planned for (prompt + generated tokens).</param>
    /// <param name="deviceBudget">The budget governing the runtime's device tier (the GPU's, or host memory's on a CPU node).</param>
    /// <param name="hardware">The profile the cost model ranks candidates with (FlexGen's T4 machine when none is given).</param>
    public RuntimePlacementPlanner(OffloadRuntime runtime, Policy basePolicy, int promptLength, int capacity, Tier deviceBudget = Tier.Gpu,
        HardwareProfile? hardware = null)
    {
        _runtime = runtime;
        _base = basePolicy;
        _capacity = capacity;
        _deviceBudget = deviceBudget;
        var c = runtime.Config;
        _model = Runtime.Placement.ModelSpecs.From(c, (int)Runtime.Tiers.MemoryTier.ElementSize(runtime.DType), runtime.Layers);
        _workload = new Workload(Math.Max(1, promptLength), Math.Max(1, capacity - promptLength));
        _hardware = hardware ?? HardwareProfiles.T4FlexGen;
        Compiled = Task.Run(Compile);
    }

    /// <summary>
    /// Completes once every candidate's footprint and cost-model score are known (planning before that computes what it
    /// needs itself).
    /// </summary>
    public Task Compiled { get; }

    /// <summary>Candidate placements known so far.</summary>
    public int Placements => _footprints.Count;

    private void Compile()
    {
        foreach (var weights in WeightCandidates())
            for (var batches = _base.NumGpuBatches; batches >= 1; batches--)
                for (var size = 1; size <= _base.GpuBatchSize; size++)
                {
                    var candidate = With(weights, size, batches);
                    PlanFor(candidate);
                    Score(candidate);
                }
        // The search's answer changes only where a device budget reaches another candidate's footprint: searched once
        // at each distinct footprint, a budget change at run time is a bisection of that table.
        var footprints = _footprints.Values.Select(f => f.Device).Distinct().Order().ToArray();
        var answers = footprints.AsParallel().AsOrdered().Select(device => Search(device, long.MaxValue)).ToArray();
        _table = new BudgetTable(footprints, answers, _footprints.Values.Max(f => f.Cpu));
    }

    /// <summary>
    /// The search's answer for every device budget from one candidate's footprint to the next (<see cref="Answers"/>[i]
    /// for budgets from <see cref="Device"/>[i] up), while the CPU budget leaves room for every candidate
    /// (<see cref="MaxCpu"/>); none below the smallest footprint.
    /// </summary>
    private sealed record BudgetTable(long[] Device, BlockPolicy?[] Answers, long MaxCpu)
    {
        public BlockPolicy? For(long device)
        {
            var at = Array.BinarySearch(Device, device);
            if (at < 0) at = ~at - 1;
            return at < 0 ? null : Answers[at];
        }
    }

    private volatile BudgetTable? _table;

    /// <summary>
    /// The device tier's bytes for a block of this geometry with the base policy's fractions (as planned: every
    /// sequence's context at the full capacity).
    /// </summary>
    public long BytesFor(int gpuBatchSize, int numGpuBatches) => PlanFor(With(_base.Weights, gpuBatchSize, numGpuBatches)).Device;

    /// <summary>
    /// What one sequence needs per tier with the weights as far off the device as the planner would move them: below
    /// that device budget nothing runs.
    /// </summary>
    public Runtime.Placement.TierBytes Smallest => PlanFor(With(WeightCandidates().Last(), 1, 1));

    private Policy With(TierFractions weights, int size, int batches) =>
        new(size, batches, weights, _base.Cache, _base.Activations)
        {
            CpuAttention = _base.CpuAttention, PinWeights = _base.PinWeights, SpreadWeights = _base.SpreadWeights,
        };

    // A requeued sequence resumes with its generated tokens as context: its prefill state can be as long as the whole
    // capacity less one token. Its batch's cache runs from the longest context to the most tokens any of its sequences
    // still has to generate, and a fresh sequence beside it has all of them to go: so blocks are planned for a prefill
    // of capacity - 1 tokens and a cache of that plus the generation length.
    private Runtime.Placement.TierBytes PlanFor(Policy policy) =>
        _footprints.GetOrAdd((policy.Weights, policy.GpuBatchSize, policy.NumGpuBatches),
            _ => _runtime.WithHostCopies(_runtime.PlanBlock(policy, LongestContext, LongestContext + _workload.GenerationLength)));

    private int LongestContext => Math.Max(1, _capacity - 1);

    /// <summary>The device bytes of the largest block with the base fractions: the smallest budget that gives that block unchanged.</summary>
    public long LargestBlockBytes => BytesFor(_base.GpuBatchSize, _base.NumGpuBatches);

    public BlockPolicy? Plan(TierBudgets budgets)
    {
        // No device budget (none known yet, or an operator's 0) leaves no room: nothing runs.
        var device = budgets[_deviceBudget];
        var cpu = _deviceBudget != Tier.Cpu && budgets.Cpu > 0 ? budgets.Cpu : long.MaxValue;
        return _table is { } table && cpu >= table.MaxCpu ? table.For(device) : Search(device, cpu);
    }

    /// <summary>The best candidate that fits these tier budgets, searched (what the compiled table holds, where it applies).</summary>
    internal BlockPolicy? Search(TierBudgets budgets) =>
        Search(budgets[_deviceBudget], _deviceBudget != Tier.Cpu && budgets.Cpu > 0 ? budgets.Cpu : long.MaxValue);

    private BlockPolicy? Search(long device, long cpu)
    {
        (Policy Policy, double Score)? best = null;
        foreach (var weights in WeightCandidates())
        {
            if (Largest(weights, device, cpu) is not { } policy) continue;
            var score = Score(policy);
            if (best is null || score > best.Value.Score * (1 + 1e-9)) best = (policy, score);
        }
        if (best is not { } chosen) return null;
        var p = chosen.Policy;
        return new BlockPolicy(p.GpuBatchSize, p.NumGpuBatches, $"weights {p.Weights}, cache {p.Cache}, activations {p.Activations}") { Runtime = p };
    }

    /// <summary>
    /// The base weight fractions, then the device share lowered 10 points at a time down to nothing. When one budget
    /// governs the device tier and host memory alike (a CPU node), moving weights frees nothing: the base only.
    /// </summary>
    private IEnumerable<TierFractions> WeightCandidates() => WeightCandidates(_base.Weights, _deviceBudget);

    /// <summary>
    /// The weight placements the planner chooses among: the base policy's, then less of the weights on the device in
    /// 10% steps (the disk share kept). Under a host-memory device budget (a CPU node) only the base's.
    /// </summary>
    public static IEnumerable<TierFractions> WeightCandidates(TierFractions weights, Tier deviceBudget)
    {
        yield return weights;
        if (deviceBudget == Tier.Cpu) yield break;
        var gpu = (int)Math.Round(weights.Gpu * 100);
        var disk = (int)Math.Round(weights.Disk * 100);
        for (var g = gpu / 10 * 10; g >= 0; g -= 10)
            if (g != gpu) yield return TierFractions.FromPercent(g, 100 - g - disk);
    }

    /// <summary>
    /// The geometry the cost model ranks best among those that fit: for each number of GPU batches (up to the base's),
    /// the largest batch size (up to the base's) that fits; on a tie the one listed first (more GPU batches, which drop
    /// at a finer grain). Null when not even one sequence fits.
    /// </summary>
    private Policy? Largest(TierFractions weights, long device, long cpu)
    {
        bool Fits(int size, int batches)
        {
            var total = PlanFor(With(weights, size, batches));
            return total.Device <= device && total.Cpu <= cpu;
        }

        (Policy Policy, double Score)? best = null;
        for (var batches = _base.NumGpuBatches; batches >= 1; batches--)
        {
            if (!Fits(1, batches)) continue;
            // The footprint grows with the batch size: the largest that fits, by bisection.
            int low = 1, high = _base.GpuBatchSize;
            while (low < high)
            {
                var mid = (low + high + 1) / 2;
                if (Fits(mid, batches)) low = mid;
                else high = mid - 1;
            }
            var candidate = With(weights, low, batches);
            var score = Score(candidate);
            if (best is null || score > best.Value.Score * (1 + 1e-9)) best = (candidate, score);
        }
        return best?.Policy;
    }

    private double Score(Policy policy) => _scores.GetOrAdd(policy, ScoreOnce);

    private double ScoreOnce(Policy policy)
    {
        try
        {
            return CostModel.Evaluate(_model, _workload, policy, _hardware).ThroughputTokensPerSecond;
        }
        catch (ArgumentException)
        {
            return 0;
        }
    }
}
