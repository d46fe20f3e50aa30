namespace ActorInfer.Runtime.Tiers;

/// <summary>
/// What a GPU budget must leave aside for memory the runtime's accounting does not see: the CUDA context (with
/// the libraries' handles and loaded kernels), measured as the device's used bytes when the job starts, and an
/// allowance for what the device holds outside both the tensors and the allocator's reserve for the buffers. A budget
/// is a limit on what the device reports for the job, so the tiers and the planner get the budget less this reserve;
/// the planner charges the allocator's reserve for a policy's buffers on top of its tensors
/// (<see cref="ActorInfer.Planning.MemoryBudget.GpuBufferReserve"/>), since that reserve follows the buffers, not the
/// budget. What keeps the allocator within the budget is the cap the budget sets on it
/// (<see cref="ActorInfer.Runtime.Cuda.AllocatorSettings.CapDevice"/>).
/// </summary>
public sealed record DeviceReserve(long ContextBytes, long AllocatorAllowanceBytes)
{
    /// <summary>
    /// The allowance: 2% of the budget, at least 512 MiB. Beside the tensors and the allocator's reserve for the buffers
    /// (0.3 of them: 0.18 to 0.34 over five policies on an H100), the device held up to 0.25 GiB more where weights
    /// stream (docs/perf/h100-device-peak/). A flat 10% of the budget had been the whole allowance: 4 GiB under 40 GiB,
    /// where OPT-6.7B all on the GPU left 0.44 GiB of reserve beyond its tensors (docs/perf/h200-block-sizes/).
    /// </summary>
    public static long AllowanceFor(long budget) => Math.Max(512L << 20, budget * AllowancePercent / 100);

    private const long AllowancePercent = 2;

    public static DeviceReserve None { get; } = new(0, 0);

    public long Bytes => ContextBytes + AllocatorAllowanceBytes;

    public static DeviceReserve For(long budget, long contextBytes)
    {
        if (contextBytes < 0) throw new ArgumentOutOfRangeException(nameof(contextBytes), contextBytes, "must not be negative");
        return new DeviceReserve(contextBytes, AllowanceFor(budget));
    }

    /// <summary>
    /// The least budget whose usable part (<see cref="Usable"/>) holds <paramref name="usable"/> bytes beside a context of
    /// <paramref name="contextBytes"/>: the allowance is the budget's own, so past its floor the budget is the rest over 98%.
    /// </summary>
    public static long BudgetFor(long usable, long contextBytes)
    {
        var needed = usable + contextBytes;
        var floor = AllowanceFor(0);
        if (AllowanceFor(needed + floor) == floor) return needed + floor;
        // The allowance is rounded down, so the quotient may overshoot by a byte or two.
        var budget = (needed * 100 + 99 - AllowancePercent) / (100 - AllowancePercent);
        while (budget - AllowanceFor(budget) < needed) budget++;
        while (budget - 1 - AllowanceFor(budget - 1) >= needed) budget--;
        return budget;
    }

    /// <summary>The bytes left for the runtime's accounted tensors and the planner's working memory.</summary>
    public long Usable(long budget)
    {
        var usable = budget - Bytes;
        if (usable <= 0)
            throw new TierBudgetExceededException(TierKind.Device, Bytes, budget,
                $"the CUDA context ({ContextBytes} bytes in use on the device at start) and the allocator's allowance ({AllocatorAllowanceBytes} bytes)");
        return usable;
    }
}
