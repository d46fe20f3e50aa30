using System.Diagnostics;

namespace ActorInfer.Planning;

/// <summary>
/// The policy search: an outer enumeration of batch geometries and, for each, a linear program over the nine
/// placement shares that minimizes the time per generated token under the memory budget.
/// </summary>
public static class PolicySearch
{
    public static SearchResult Find(ModelSpec model, Workload workload, HardwareProfile hardware, MemoryBudget budget, SearchOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(workload);
        ArgumentNullException.ThrowIfNull(budget);
        hardware.Validate();
        options ??= SearchOptions.Default;
        options.Validate();
        foreach (var tier in Enum.GetValues<Tier>())
            budget.Usable(tier);

        var clock = Stopwatch.StartNew();
        using var program = new PlacementProgram();
        program.FixShares(options.FixedShares);
        var search = new Enumeration(model, workload, hardware, budget, options, program);
        search.Run();
        if (search.Best is not { } best)
            throw NoFeasible(model, workload, hardware, budget, options, program);

        var estimate = CostModel.Evaluate(model, workload, best.Policy, best.Terms, best.Realized, LinearExpression.SharesOf(best.Policy));
        clock.Stop();
        return new SearchResult
        {
            Policy = best.Policy,
            Estimate = estimate,
            Binding = Binding(estimate, budget),
            CandidatesEvaluated = search.Candidates,
            SearchTime = clock.Elapsed,
        };
    }

    /// <summary>
    /// GPU batch sizes tried, ascending: powers of two and 1.5 times powers of two (FlexGen's runs use e.g. 48), and from 8
    /// on also 1.25 and 1.75 times them (80 sequences of OPT-6.7B fit 40 GiB where 96 do not), up to the block bound.
    /// </summary>
    public static IEnumerable<int> GpuBatchSizes(int maxBlockSize)
    {
        for (long power = 1; power <= maxBlockSize; power *= 2)
        {
            var steps = power >= 8 ? new long[] { 4, 5, 6, 7 } : power >= 2 ? [4, 6] : [4];
            foreach (var step in steps)
                if (power * step / 4 <= maxBlockSize)
                    yield return (int)(power * step / 4);
        }
    }

    /// <summary>Numbers of GPU batches tried: 1, 2, 3, then 4, 5, 6 times each power of two (1..6, 8, 10, 12, 16, 20, 24, 32, ...), up to the bound.</summary>
    public static IEnumerable<int> GpuBatchCounts(int upper)
    {
        for (var count = 1; count <= Math.Min(3, upper); count++)
            yield return count;
        for (long power = 1; power * 4 <= upper; power *= 2)
        {
            foreach (var step in new[] { 4, 5, 6 })
            {
                if (power * step <= upper)
                    yield return (int)(power * step);
            }
        }
    }

    internal sealed record Candidate(Policy Policy, CostTerms Terms, RealizedWeights Realized, double SecondsPerToken);

    private sealed class Enumeration(ModelSpec model, Workload workload, HardwareProfile hardware, MemoryBudget budget, SearchOptions options, PlacementProgram program)
    {
        public Candidate? Best { get; private set; }
        public int Candidates { get; private set; }

        public void Run()
        {
            var attentionModes = options.CpuAttention is { } fixedMode ? [fixedMode] : new[] { true, false };
            var batchSizes = options.GpuBatchSize is { } fixedBatch ? [fixedBatch] : GpuBatchSizes(Math.Min(options.MaxBlockSize, options.MaxGpuBatchSize ?? int.MaxValue));
            foreach (var cpuAttention in attentionModes)
            {
                foreach (var batchSize in batchSizes)
                {
                    if (options.NumGpuBatches is { } fixedCount)
                    {
                        Try(batchSize, fixedCount, cpuAttention);
                        continue;
                    }
                    // Memory only grows with the batch, so once one GPU batch alone does not fit, larger ones will not either.
                    if (!SearchBatchCounts(batchSize, cpuAttention))
                        break;
                }
            }
        }

        /// <summary>
        /// Tries every count of a fixed grid (about three per octave) from 1 up to the first that does not fit.
        /// The grid does not depend on the budget, so a larger budget sees a superset of the candidates a smaller
        /// one sees, each with a larger feasible region: more memory never lowers the best throughput found.
        /// </summary>
        private bool SearchBatchCounts(int batchSize, bool cpuAttention)
        {
            var upper = Math.Min(Math.Min(options.MaxBlockSize / batchSize, options.MaxNumGpuBatches ?? int.MaxValue), CountBound(batchSize));
            var anyFits = false;
            foreach (var count in GpuBatchCounts(upper))
            {
                if (Try(batchSize, count, cpuAttention) is null)
                    break;
                anyFits = true;
            }
            return anyFits;
        }

        /// <summary>An upper bound on the number of GPU batches: all tiers together must at least hold the weights and the block's cache.</summary>
        private int CountBound(int batchSize)
        {
            var usable = Enum.GetValues<Tier>().Sum(budget.Usable);
            var cacheScale = options.CompressCache ? CostTerms.CompressedBytesPerElement / model.BytesPerElement : 1;
            var weightScale = options.CompressWeights ? CostTerms.CompressedBytesPerElement / model.BytesPerElement : 1;
            var cachePerSequence = (double)model.CacheBytesPerTokenPerLayer * workload.TotalLength * model.NumLayers * cacheScale;
            var room = usable - model.TotalWeightBytes * weightScale;
            return room <= 0 ? 0 : (int)Math.Min(int.MaxValue / 2, Math.Floor(room / (cachePerSequence * batchSize)));
        }

        /// <summary>
        /// Solves one geometry; returns its seconds per generated token, or null when nothing fits. The linear program
        /// chooses continuous weight fractions; the placements of whole tensors near them (<see cref="RealizableWeights"/>)
        /// are then solved again with their weights as placed, nearest first, so that the policy returned is priced, and
        /// fits, as placed.
        /// </summary>
        private double? Try(int batchSize, int count, bool cpuAttention)
        {
            Candidates++;
            var shape = new PolicyShape(batchSize, count, cpuAttention, options.CompressWeights, options.CompressCache)
            {
                SpreadWeights = options.SpreadWeights,
            };
            double? best = null;
            foreach (var variant in Variants(shape))
            {
                if (!variant.CacheOnGpu) program.FixShares(new Dictionary<Placement, double>(options.FixedShares) { [Placement.CacheGpu] = 0 });
                try
                {
                    var shares = program.MinimizeTime(CostTerms.Build(model, workload, variant, hardware), model.NumLayers, workload.DecodeSteps, budget);
                    if (shares is null)
                        continue;
                    foreach (var ring in RealizableWeights.Near(model, Fractions(shares, 0), options.FixedShares, options.SpreadWeights))
                    {
                        var found = false;
                        foreach (var weights in ring)
                        {
                            var realized = model.RealizeWeights(weights, options.SpreadWeights);
                            var terms = CostTerms.Build(model, workload, variant, hardware, realized);
                            if (!ConstantsFit(terms) || program.MinimizeTime(terms, model.NumLayers, workload.DecodeSteps, budget) is not { } placed)
                                continue;
                            found = true;
                            var policy = ToPolicy(variant, placed).Reshaped(batchSize, count, weights);
                            var estimate = CostModel.Evaluate(model, workload, policy, terms, realized, LinearExpression.SharesOf(policy));
                            var secondsPerToken = estimate.TotalSeconds / estimate.GeneratedTokens;
                            if (Best is null || secondsPerToken < Best.SecondsPerToken * (1 - 1e-9))
                                Best = new Candidate(policy, terms, realized, secondsPerToken);
                            best = best is { } b ? Math.Min(b, secondsPerToken) : secondsPerToken;
                        }
                        // The placements nearest the continuous answer that fit are the ones it stands for; farther ones only cost time.
                        if (found)
                            break;
                    }
                }
                finally
                {
                    if (!variant.CacheOnGpu) program.FixShares(options.FixedShares);
                }
            }
            return best;
        }

        /// <summary>
        /// Whether what no share can lower (the weights as placed among it) fits every tier: memory only grows with the
        /// shares, so a placement that fails this needs no linear program to be refused.
        /// </summary>
        private bool ConstantsFit(CostTerms terms) =>
            Enum.GetValues<Phase>().All(phase => Enum.GetValues<Tier>().All(tier => terms.Memory(phase).Charged(tier, budget.GpuBufferReserve).Constant <= budget.Usable(tier)));

        /// <summary>
        /// The shapes to solve for a geometry. With a compressed cache attended on the CPU, a cache on the GPU costs its
        /// expansion there whatever its share (<see cref="PolicyShape.CacheOnGpu"/>): the geometry is solved without a GPU
        /// cache first (so that a tie keeps the cheaper terms) and then with one, unless the caller fixed that share.
        /// </summary>
        private IEnumerable<PolicyShape> Variants(PolicyShape shape)
        {
            var fixedGpuCache = options.FixedShares.TryGetValue(Placement.CacheGpu, out var share) ? share : (double?)null;
            if (!(shape.CompressCache && shape.CpuAttention))
                return [shape];
            return fixedGpuCache switch
            {
                null => [shape with { CacheOnGpu = false }, shape],
                0 => [shape with { CacheOnGpu = false }],
                _ => [shape],
            };
        }
    }

    internal static Policy ToPolicy(PolicyShape shape, double[] shares) =>
        new(shape.GpuBatchSize, shape.NumGpuBatches, Fractions(shares, 0), Fractions(shares, 3), Fractions(shares, 6))
        {
            CpuAttention = shape.CpuAttention,
            CompressWeights = shape.CompressWeights,
            CompressCache = shape.CompressCache,
            SpreadWeights = shape.SpreadWeights,
        };

    /// <summary>The solver's values, cleaned of its rounding (tiny negatives, sums a hair off 1).</summary>
    private static TierFractions Fractions(double[] shares, int offset)
    {
        var gpu = Math.Clamp(shares[offset], 0, 1);
        var cpu = Math.Clamp(shares[offset + 1], 0, 1);
        var disk = Math.Clamp(shares[offset + 2], 0, 1);
        var sum = gpu + cpu + disk;
        return new TierFractions(gpu / sum, cpu / sum, disk / sum);
    }

    private static BindingConstraint Binding(CostEstimate estimate, MemoryBudget budget)
    {
        BindingConstraint? fullest = null;
        foreach (var phase in Enum.GetValues<Phase>())
        {
            var memory = phase == Phase.Prefill ? estimate.PrefillMemory : estimate.DecodeMemory;
            var gpuParts = phase == Phase.Prefill ? estimate.PrefillGpuParts : estimate.DecodeGpuParts;
            foreach (var tier in Enum.GetValues<Tier>())
            {
                var usable = budget.Usable(tier);
                var used = tier == Tier.Gpu && budget.GpuBufferReserve > 0 && gpuParts.Count > 0
                    ? DevicePeak.Reserved(gpuParts, budget.GpuBufferReserve)
                    : memory.For(tier);
                var utilization = usable > 0 ? used / usable : used > 0 ? double.PositiveInfinity : 0;
                if (fullest is null || utilization > fullest.Utilization)
                    fullest = new BindingConstraint(tier, phase, utilization);
            }
        }
        return fullest!;
    }

    private static NoFeasiblePolicyException NoFeasible(ModelSpec model, Workload workload, HardwareProfile hardware, MemoryBudget budget, SearchOptions options, PlacementProgram program)
    {
        var shape = new PolicyShape(options.GpuBatchSize ?? 1, options.NumGpuBatches ?? 1, options.CpuAttention ?? true, options.CompressWeights, options.CompressCache)
        {
            SpreadWeights = options.SpreadWeights,
        };
        var terms = CostTerms.Build(model, workload, shape, hardware);
        var reserve = budget.GpuBufferReserve;
        var perTier = new TierBytes(program.MinimumPeak(terms, Tier.Gpu, reserve), program.MinimumPeak(terms, Tier.Cpu, reserve),
            program.MinimumPeak(terms, Tier.Disk, reserve));
        var total = program.MinimumPeak(terms, null, reserve);
        var message =
            $"no feasible policy for {model.Name} (prompt {workload.PromptLength}, generation {workload.GenerationLength}) " +
            $"within GPU {ByteSize.Format(budget.Usable(Tier.Gpu))}, CPU {ByteSize.Format(budget.Usable(Tier.Cpu))}, disk {ByteSize.Format(budget.Usable(Tier.Disk))} usable. " +
            $"At batch {shape.GpuBatchSize} x {shape.NumGpuBatches} it needs at least GPU {ByteSize.Format(perTier.Gpu)}" +
            (reserve > 0 ? $" (its buffers with the allocator's reserve of {reserve:0.##} of them)" : "") + $", CPU {ByteSize.Format(perTier.Cpu)}, " +
            $"disk {ByteSize.Format(perTier.Disk)} (each with the other tiers unlimited) and {ByteSize.Format(total)} over all tiers together";
        return new NoFeasiblePolicyException(message, perTier, total);
    }
}
