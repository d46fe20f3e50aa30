using ActorInfer.Planning;
using TierBytes = ActorInfer.Runtime.Placement.TierBytes;

namespace ActorInfer.Actors.Planner;

/// <summary>
/// The policy search of ActorInfer.Planning, corrected to a runtime's placement. The cost model counts memory by
/// fractions; the runtime places whole tensors and holds working buffers. When the runtime's placement of the
/// search's policy overshoots a budget, the search runs again with that tier's budget lowered by the overshoot,
/// until the placement fits.
/// </summary>
public static class FittingSearch
{
    /// <summary>Bytes per tier the search may use (the device's is the GPU's, or host memory's on a CPU node).</summary>
    public sealed record Budget(long Gpu, long Cpu, long Disk)
    {
        /// <summary>The GPU's buffers counted with the allocator's reserve on top (<see cref="MemoryBudget.GpuBufferReserve"/>).</summary>
        public double GpuBufferReserve { get; init; }

        public override string ToString() => $"gpu {ByteSize.Format(Gpu)}, cpu {ByteSize.Format(Cpu)}, disk {ByteSize.Format(Disk)}";
    }

    /// <summary>The best policy whose placement fits <paramref name="budget"/>.</summary>
    /// <param name="placementOf">What the runtime would hold per tier for a block of the workload under a policy.</param>
    /// <exception cref="NoFeasiblePolicyException">Nothing fits, by the cost model's count.</exception>
    /// <exception cref="PlacementDoesNotFitException">The search's policies fit by its count but never in the runtime's placement.</exception>
    public static SearchResult Find(ModelSpec model, Workload workload, HardwareProfile hardware, SearchOptions options, Budget budget,
        Func<Policy, TierBytes> placementOf)
    {
        var planned = budget;
        string? lastMiss = null;
        for (var attempt = 0; ; attempt++)
        {
            SearchResult search;
            try
            {
                search = PolicySearch.Find(model, workload, hardware, new MemoryBudget(planned.Gpu, planned.Cpu, planned.Disk) { GpuBufferReserve = planned.GpuBufferReserve }, options);
            }
            catch (NoFeasiblePolicyException) when (lastMiss is not null)
            {
                throw new PlacementDoesNotFitException(
                    $"no feasible policy: the planner's best fitting policy needs {lastMiss} in this runtime's placement, over the budgets ({budget})");
            }
            var placement = placementOf(search.Policy);
            var over = new Budget(Over(placement.Device, budget.Gpu), Over(placement.Cpu, budget.Cpu), Over(placement.Disk, budget.Disk));
            if (over is { Gpu: 0, Cpu: 0, Disk: 0 }) return search;
            lastMiss = $"gpu {ByteSize.Format(placement.Device)}, cpu {ByteSize.Format(placement.Cpu)}, disk {ByteSize.Format(placement.Disk)} (with {search.Policy})";
            if (attempt == 8)
                throw new PlacementDoesNotFitException($"the planner's policy ({search.Policy}) does not fit this runtime's placement after {attempt} corrections");
            planned = planned with { Gpu = Shrink(planned.Gpu, over.Gpu), Cpu = Shrink(planned.Cpu, over.Cpu), Disk = Shrink(planned.Disk, over.Disk) };
        }
    }

    private static long Over(long needed, long allowed) => Math.Max(0, needed - allowed);

    // A little more than the overshoot: the search's next answer tends to fill the lowered budget again.
    private static long Shrink(long current, long overshoot) => overshoot == 0 ? current : Math.Max(1, current - overshoot - overshoot / 20 - (64L << 20));
}

/// <summary>The search's policies fit the budgets by the cost model's count, but not in the runtime's placement.</summary>
public sealed class PlacementDoesNotFitException(string message) : Exception(message);
