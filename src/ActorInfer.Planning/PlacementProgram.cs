using Google.OrTools.LinearSolver;

namespace ActorInfer.Planning;

/// <summary>
/// The linear program over the nine placement shares for one batch geometry, solved with GLOP. Built once and
/// re-used across candidates: only coefficients and bounds change between geometries.
/// <para>
/// Variables: the nine shares in [0, 1], the per-layer prefill time and the per-layer decoding time. Each phase's
/// layer time is the maximum of three linear stream times; minimizing it is linear because the objective pushes
/// each time variable down onto the largest of the rows "time >= stream" (an epigraph formulation).
/// </para>
/// </summary>
internal sealed class PlacementProgram : IDisposable
{
    /// <summary>Memory rows are stated in gigabytes so that byte counts and seconds have similar magnitudes.</summary>
    private const double BytesPerUnit = 1e9;
    /// <summary>The solver's feasibility tolerance is relative; a small margin keeps every accepted policy within budget.</summary>
    private const double MemoryMargin = 1e-7;
    /// <summary>Weight of the secondary objective (total busy time of all streams) against the block time.</summary>
    private const double TieBreakWeight = 1e-6;

    private readonly Solver solver;
    private readonly Variable[] shares = new Variable[LinearExpression.VariableCount];
    private readonly Variable prefillLayerTime;
    private readonly Variable decodeLayerTime;
    private readonly Constraint[,] streamRows = new Constraint[2, 3];
    private readonly Constraint[,] memoryRows = new Constraint[2, 3];
    private readonly Variable[] peakMemory = new Variable[3];
    private readonly Constraint[,] peakRows = new Constraint[2, 3];
    /// <summary>Each phase's and tier's memory as the budget counts it, for the terms last loaded.</summary>
    private readonly LinearExpression[,] memory = new LinearExpression[2, 3];

    public PlacementProgram()
    {
        solver = Solver.CreateSolver("GLOP") ?? throw new InvalidOperationException("the GLOP linear solver is not available");
        foreach (var share in Enum.GetValues<Placement>())
            shares[(int)share] = solver.MakeNumVar(0, 1, share.ToString());
        prefillLayerTime = solver.MakeNumVar(0, double.PositiveInfinity, "prefill_layer_seconds");
        decodeLayerTime = solver.MakeNumVar(0, double.PositiveInfinity, "decode_layer_seconds");
        for (var kind = 0; kind < 3; kind++)
        {
            var sum = solver.MakeConstraint(1, 1, $"shares_of_kind_{kind}");
            for (var tier = 0; tier < 3; tier++)
                sum.SetCoefficient(shares[kind * 3 + tier], 1);
        }
        for (var tier = 0; tier < 3; tier++)
            peakMemory[tier] = solver.MakeNumVar(0, double.PositiveInfinity, $"peak_{(Tier)tier}");
        for (var phase = 0; phase < 2; phase++)
        {
            for (var stream = 0; stream < 3; stream++)
                streamRows[phase, stream] = solver.MakeConstraint(double.NegativeInfinity, 0, $"time_{(Phase)phase}_{stream}");
            for (var tier = 0; tier < 3; tier++)
            {
                memoryRows[phase, tier] = solver.MakeConstraint(double.NegativeInfinity, 0, $"memory_{(Phase)phase}_{(Tier)tier}");
                peakRows[phase, tier] = solver.MakeConstraint(double.NegativeInfinity, double.PositiveInfinity, $"peak_{(Phase)phase}_{(Tier)tier}");
            }
        }
    }

    public int SolveCount { get; private set; }

    /// <summary>Shares fixed by the caller (null: free).</summary>
    public void FixShares(IReadOnlyDictionary<Placement, double> fixedShares)
    {
        foreach (var share in Enum.GetValues<Placement>())
        {
            var variable = shares[(int)share];
            if (fixedShares.TryGetValue(share, out var value))
                variable.SetBounds(value, value);
            else
                variable.SetBounds(0, 1);
        }
    }

    /// <summary>Minimizes the block's time; returns the optimal shares, or null when no placement fits the budget (or the solver cannot settle the program).</summary>
    public double[]? MinimizeTime(CostTerms terms, int layers, int decodeSteps, MemoryBudget budget)
    {
        Load(terms, budget.GpuBufferReserve);
        foreach (var tier in Enum.GetValues<Tier>())
        {
            for (var phase = 0; phase < 2; phase++)
            {
                var constant = memory[phase, (int)tier].Constant;
                memoryRows[phase, (int)tier].SetBounds(double.NegativeInfinity, (budget.Usable(tier) * (1 - MemoryMargin) - constant) / BytesPerUnit);
                peakRows[phase, (int)tier].SetBounds(double.NegativeInfinity, double.PositiveInfinity);
            }
        }
        var objective = solver.Objective();
        objective.Clear();
        objective.SetCoefficient(prefillLayerTime, layers);
        objective.SetCoefficient(decodeLayerTime, (double)layers * decodeSteps);
        // Many placements often tie on the slowest stream; among them prefer the one that keeps the other streams
        // least busy (less traffic, nothing on disk without need). The weight is small enough not to trade time for it.
        foreach (var share in Enum.GetValues<Placement>())
        {
            double busy = 0;
            foreach (var (phase, repetitions) in new[] { (Phase.Prefill, 1.0), (Phase.Decode, decodeSteps) })
            {
                var time = terms.Time(phase);
                busy += repetitions * layers * (time.LoadStream[share] + time.StoreStream[share] + time.ComputeStream[share]);
            }
            objective.SetCoefficient(shares[(int)share], TieBreakWeight * busy);
        }
        objective.SetMinimization();
        return Solve();
    }

    /// <summary>
    /// The least peak memory of one tier (or, with null, of all tiers together) over all placements, other tiers unlimited,
    /// the GPU's counted with <paramref name="gpuBufferReserve"/> (<see cref="MemoryBudget.GpuBufferReserve"/>).
    /// </summary>
    public double MinimumPeak(CostTerms terms, Tier? tier, double gpuBufferReserve)
    {
        Load(terms, gpuBufferReserve);
        for (var phase = 0; phase < 2; phase++)
        {
            for (var each = 0; each < 3; each++)
            {
                var constant = memory[phase, each].Constant;
                memoryRows[phase, each].SetBounds(double.NegativeInfinity, double.PositiveInfinity);
                peakRows[phase, each].SetBounds(double.NegativeInfinity, -constant / BytesPerUnit);
            }
        }
        var objective = solver.Objective();
        objective.Clear();
        for (var each = 0; each < 3; each++)
        {
            if (tier is null || (int)tier == each)
                objective.SetCoefficient(peakMemory[each], 1);
        }
        objective.SetMinimization();
        return Solve() is null ? double.PositiveInfinity : objective.Value() * BytesPerUnit;
    }

    private void Load(CostTerms terms, double gpuBufferReserve)
    {
        for (var phase = 0; phase < 2; phase++)
        {
            var time = terms.Time((Phase)phase);
            var layerTime = phase == 0 ? prefillLayerTime : decodeLayerTime;
            LoadRow(streamRows[phase, 0], time.LoadStream, layerTime, 1);
            LoadRow(streamRows[phase, 1], time.StoreStream, layerTime, 1);
            LoadRow(streamRows[phase, 2], time.ComputeStream, layerTime, 1);
            for (var tier = 0; tier < 3; tier++)
            {
                var charged = memory[phase, tier] = terms.Memory((Phase)phase).Charged((Tier)tier, gpuBufferReserve);
                LoadRow(memoryRows[phase, tier], charged, null, BytesPerUnit);
                LoadRow(peakRows[phase, tier], charged, peakMemory[tier], BytesPerUnit);
            }
        }
    }

    /// <summary>Row: expression/scale − bound ≤ −constant/scale; the caller sets the right-hand side for memory rows.</summary>
    private void LoadRow(Constraint row, LinearExpression expression, Variable? bound, double scale)
    {
        foreach (var share in Enum.GetValues<Placement>())
            row.SetCoefficient(shares[(int)share], expression[share] / scale);
        if (bound is not null)
        {
            row.SetCoefficient(bound, -1);
            if (scale == 1)
                row.SetBounds(double.NegativeInfinity, -expression.Constant);
        }
    }

    private double[]? Solve()
    {
        SolveCount++;
        var status = solver.Solve();
        if (status == Solver.ResultStatus.ABNORMAL)
        {
            // GLOP starts each solve from the last basis; after many coefficient changes that basis can be numerically
            // unusable (seen with a compressed cache attended on the GPU). A solve from scratch settles it.
            solver.Reset();
            status = solver.Solve();
        }
        // Unsettled even from scratch (seen with a budget of a hundred kilobytes, beside memory terms a thousand times
        // larger): the candidate is taken as not fitting, so that one program the solver cannot settle costs the search that
        // candidate, not its answer.
        if (status is Solver.ResultStatus.ABNORMAL or Solver.ResultStatus.INFEASIBLE)
            return null;
        if (status != Solver.ResultStatus.OPTIMAL)
            throw new InvalidOperationException($"the linear solver stopped with status {status}");
        var values = new double[LinearExpression.VariableCount];
        for (var i = 0; i < values.Length; i++)
            values[i] = shares[i].SolutionValue();
        return values;
    }

    public void Dispose() => solver.Dispose();
}
