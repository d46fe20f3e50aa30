namespace ActorInfer.Runtime.Tiers;

/// <summary>
/// What a GPU budget must leave aside for memory the runtime's accounting does not see: the CUDA context (with
/// the libraries' handles and loaded kernels), measured as the device's used bytes when the job starts, and an
/// allowance for the caching allocator's rounding and fragmentation. A budget is a limit on what the device
/// reports for the job, so the tiers and the planner get the budget less this reserve. The allowance is room the planner
/// leaves; what keeps the allocator within it is the cap the budget sets on the allocator
/// (<see cref="ActorInfer.Runtime.Cuda.AllocatorSettings.CapDevice"/>).
/// </summary>
public sealed record DeviceReserve(long ContextBytes, long AllocatorAllowanceBytes)
{
    /// <summary>
    /// The allowance: 10% of the budget, at least 512 MiB. With 6% OPT-30B under 16 GiB on an H100 (24 x 3, expandable
    /// segments) peaked at 16.48 GiB as the device reported it: its tensors at 14.47 GiB (the planner predicted 14.43), the
    /// allocator's reserve 1.15 GiB beyond them and 0.25 GiB outside both, against a 0.96 GiB allowance
    /// (docs/perf/h100-kernels/). With 3% it had peaked at 16.13 GiB on an H200.
    /// </summary>
    public static long AllowanceFor(long budget) => Math.Max(512L << 20, budget * AllowancePercent / 100);

    private const long AllowancePercent = 10;

    public static DeviceReserve None { get; } = new(0, 0);

    public long Bytes => ContextBytes + AllocatorAllowanceBytes;

    public static DeviceReserve For(long budget, long contextBytes)
    {
        if (contextBytes < 0) throw new ArgumentOutOfRangeException(nameof(contextBytes), contextBytes, "must not be negative");
        return new DeviceReserve(contextBytes, AllowanceFor(budget));
    }

    /// <summary>
    /// The least budget whose usable part (<see cref="Usable"/>) holds <paramref name="usable"/> bytes beside a context of
    /// <paramref name="contextBytes"/>: the allowance is the budget's own, so past its floor the budget is the rest over 90%.
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
