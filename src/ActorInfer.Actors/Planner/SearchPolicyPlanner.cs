using ActorInfer.Actors.Memory;
using ActorInfer.Planning;

namespace ActorInfer.Actors.Planner;

/// <summary>
/// The offloading policy search of ActorInfer.Planning behind <see cref="IPolicyPlanner"/>: the hardware profile,
/// model shape and workload are fixed; each budget change searches again. Null when nothing is feasible.
/// </summary>
public sealed class SearchPolicyPlanner(ModelSpec model, Workload workload, HardwareProfile hardware, SearchOptions? options = null) : IPolicyPlanner
{
    /// <summary>The full result of the last successful search (predicted throughput, peak memory per tier).</summary>
    public SearchResult? Last { get; private set; }

    public BlockPolicy? Plan(TierBudgets budgets)
    {
        try
        {
            var result = PolicySearch.Find(model, workload, hardware, new MemoryBudget(budgets.Gpu, budgets.Cpu, budgets.Disk), options);
            Last = result;
            var p = result.Policy;
            return new BlockPolicy(p.GpuBatchSize, p.NumGpuBatches,
                $"weights {p.Weights}, cache {p.Cache}, activations {p.Activations}");
        }
        catch (NoFeasiblePolicyException)
        {
            return null;
        }
        catch (ArgumentException)
        {
            // A budget the search cannot take (zero on a tier it needs) is "nothing fits", not a crash.
            return null;
        }
    }
}
