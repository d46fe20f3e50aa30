namespace ActorInfer.Runtime.Tiers;

/// <summary>
/// A budget of bytes and the exact count of what is held against it. Every long-lived buffer of the runtime is
/// a lease on a tier; the lease gives its bytes back when disposed. Thread-safe: copies finish on other threads.
/// </summary>
public abstract class Tier
{
    private readonly Lock _gate = new();
    private long _held;
    private long _peak;
    private int _leases;

    protected Tier(TierKind kind, long budgetBytes)
    {
        if (budgetBytes < 0) throw new ArgumentException($"{kind} tier: the budget must not be negative, got {budgetBytes}");
        Kind = kind;
        _budget = budgetBytes;
    }

    public TierKind Kind { get; }
    public long BudgetBytes
    {
        get { lock (_gate) return _budget; }
    }

    /// <summary>
    /// A new budget (the memory-pressure actor's word, through the tier's actor). New allocations are checked
    /// against it; what is already held stays until its owner gives it back.
    /// </summary>
    public void SetBudget(long bytes)
    {
        if (bytes < 0) throw new ArgumentException($"{Kind} tier: the budget must not be negative, got {bytes}");
        lock (_gate)
        {
            _budget = bytes;
            if (_held > bytes) _setBelowHeld++;
        }
        OnBudgetChanged();
    }

    /// <summary>After a new budget: a tier that keeps freed buffers for reuse lets go of what no longer fits.</summary>
    protected virtual void OnBudgetChanged()
    {
    }

    private int _setBelowHeld;

    /// <summary>
    /// How many budgets were set while the tier held more than them. A runtime that applies a budget only once it
    /// has shed down to it keeps this at zero; after that, the tier itself refuses what would exceed the budget.
    /// </summary>
    public int BudgetsSetBelowHeld
    {
        get { lock (_gate) return _setBelowHeld; }
    }

    private long _budget;

    public long BytesHeld
    {
        get { lock (_gate) return _held; }
    }

    /// <summary>The most bytes held at once since construction or <see cref="ResetPeak"/>.</summary>
    public long PeakBytes
    {
        get { lock (_gate) return _peak; }
    }

    /// <summary>Leases not yet disposed.</summary>
    public int LiveLeases
    {
        get { lock (_gate) return _leases; }
    }

    public void ResetPeak()
    {
        lock (_gate) _peak = _held;
    }

    /// <summary>Claims <paramref name="bytes"/> or throws, naming the tier, what was asked and what is allowed.</summary>
    protected void Reserve(long bytes, string what)
    {
        lock (_gate)
        {
            if (_held + bytes > _budget)
                throw new TierBudgetExceededException(Kind, _held + bytes, _budget, what);
            _held += bytes;
            _leases++;
            _peak = Math.Max(_peak, _held);
        }
    }

    internal void Release(long bytes)
    {
        lock (_gate)
        {
            _held -= bytes;
            _leases--;
        }
    }
}
