using ActorInfer.Planning;
using ActorInfer.Actors.Configuration;
using Akka.Actor;

namespace ActorInfer.Actors.Memory;

public enum Tier
{
    Gpu,
    Cpu,
    Disk,
}

/// <summary>Each tier's current budget in bytes (0 when nothing is known: no device, no reading yet).</summary>
public sealed record TierBudgets(long Gpu, long Cpu, long Disk)
{
    public static readonly TierBudgets None = new(0, 0, 0);

    public long this[Tier tier] => tier switch
    {
        Tier.Gpu => Gpu,
        Tier.Cpu => Cpu,
        _ => Disk,
    };

    public TierBudgets With(Tier tier, long bytes) => tier switch
    {
        Tier.Gpu => this with { Gpu = bytes },
        Tier.Cpu => this with { Cpu = bytes },
        _ => this with { Disk = bytes },
    };

    /// <summary>Whether no tier's budget is below <paramref name="previous"/>'s (zero is no budget: unbounded).</summary>
    public bool NotBelow(TierBudgets previous) =>
        NotBelow(Gpu, previous.Gpu) && NotBelow(Cpu, previous.Cpu) && NotBelow(Disk, previous.Disk);

    // Field by field, not over Enum.GetValues: a budget change's first arrival must not compile generic code for it.
    private static bool NotBelow(long now, long before) => before == 0 ? now == 0 : now == 0 || now >= before;

    public override string ToString() =>
        $"gpu {ByteSize.FormatBinary(Gpu)}, cpu {ByteSize.FormatBinary(Cpu)}, disk {ByteSize.FormatBinary(Disk)}";
}

/// <summary>Reads what a tier has available right now; null when it cannot tell (no such device).</summary>
public interface IMemoryProbe
{
    long? Available(Tier tier);
}

/// <summary>
/// The memory-pressure actor: the single source of each tier's budget. A tier's budget is, in order of
/// precedence, an operator's <see cref="MemoryProtocol.SetBudget"/>, the configured fixed budget, or the
/// latest telemetry reading. Every change is published to every subscriber as <see cref="MemoryProtocol.BudgetChanged"/>.
/// </summary>
public static class MemoryProtocol
{
    public sealed record Settings(long? GpuBudget, long? CpuBudget, long? DiskBudget, TimeSpan TelemetryInterval, long TelemetryChangeThreshold)
    {
        public static Settings From(MemorySettings s) =>
            new(s.GpuBudget, s.CpuBudget, s.DiskBudget, s.TelemetryInterval, s.TelemetryChangeThreshold);

        /// <summary>
        /// The most the GPU tier's budget may be, whatever sets it (an operator, telemetry, the arbiter): the budget libtorch's
        /// allocator was capped at when the process started (<c>AllocatorSettings.CapDevice</c>), past which it cannot
        /// allocate. Null: none.
        /// </summary>
        public long? GpuCeiling { get; init; }

        public long? Configured(Tier tier) => tier switch
        {
            Tier.Gpu => GpuBudget,
            Tier.Cpu => CpuBudget,
            _ => DiskBudget,
        };
    }

    public interface ICommand;

    /// <summary>An operator (or chaos) command: the tier's budget is this many bytes until cleared.</summary>
    public sealed record SetBudget(Tier Tier, long Bytes) : ICommand;

    /// <summary>Withdraws an operator budget: the tier follows its configuration or telemetry again.</summary>
    public sealed record ClearBudget(Tier Tier) : ICommand;

    /// <summary>
    /// The GPU arbiter's share of the device for this actor's model (a node serving several models): it stands where
    /// telemetry would, below an operator's or a configured budget.
    /// </summary>
    public sealed record Share(Tier Tier, long Bytes) : ICommand;

    /// <summary>A telemetry reading, from the actor's own probe timer or injected (device events, tests).</summary>
    public sealed record TelemetryReading(Tier Tier, long AvailableBytes) : ICommand;

    /// <summary>Subscribes; the actor answers <see cref="Subscribed"/> with the current budgets and watches the subscriber.</summary>
    public sealed record Subscribe(IActorRef Subscriber) : ICommand;

    public sealed record Unsubscribe(IActorRef Subscriber) : ICommand;

    public sealed record GetBudgets : ICommand
    {
        public static readonly GetBudgets Instance = new();
    }

    public sealed record Subscribed(TierBudgets Budgets);

    public sealed record CurrentBudgets(TierBudgets Budgets);

    /// <summary>Published on every change of a tier's budget; <paramref name="Cause"/> is "operator", "config", "arbiter" or "telemetry".</summary>
    public sealed record BudgetChanged(Tier Tier, long Bytes, TierBudgets Budgets, string Cause)
    {
        /// <summary>When the budget changed (a <see cref="System.Diagnostics.Stopwatch"/> timestamp); not part of equality.</summary>
        public long At { get; init; }

        public bool Equals(BudgetChanged? other) =>
            other is not null && Tier == other.Tier && Bytes == other.Bytes && Budgets == other.Budgets && Cause == other.Cause;

        public override int GetHashCode() => HashCode.Combine(Tier, Bytes, Budgets, Cause);
    }

    /// <param name="probe">Telemetry source; null to take readings only as <see cref="TelemetryReading"/> messages.</param>
    public static Props Props(Settings settings, IMemoryProbe? probe) =>
        Akka.Actor.Props.Create(() => new MemoryPressureActor(settings, probe));
}
