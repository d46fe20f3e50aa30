using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using ActorInfer.Planning;

namespace ActorInfer.Cli.Engine;

/// <summary>
/// Replays a pressure schedule against a job running through the actors: each event changes a tier's budget, the
/// runtime's planner picks the best policy whose placement fits the budgets (weights move off the device when
/// the block alone cannot shrink enough), and the running block honours it on arrival or at its next layer boundary: GPU
/// batches dropped from the end, weights re-placed, the budgets enforced by the tiers from then on. Steps count the job's decoding steps; while a budget leaves nothing able to run,
/// no step passes, so the next step-timed event follows at once.
/// </summary>
public sealed class PressureReplay : IDisposable
{
    private readonly EngineSetup _setup;
    private readonly RuntimePlacementPlanner _planner;
    private readonly IReadOnlyList<PressureEvent> _events;
    private readonly Lock _gate = new();
    private readonly List<Timer> _timers = [];
    private long _gpu;
    private long _cpu;
    private int _steps;
    private int _next;

    public PressureReplay(EngineSetup setup, IReadOnlyList<PressureEvent> events, int promptLength, int generationLength, HardwareProfile? hardware = null)
    {
        _setup = setup;
        _events = events;
        _planner = new RuntimePlacementPlanner(setup.Engine, setup.Policy, promptLength, promptLength + generationLength, ActorInfer.Actors.Memory.Tier.Gpu, hardware);
        _gpu = setup.Tiers.Device.BudgetBytes;
        _cpu = setup.Tiers.Cpu.BudgetBytes;
        // Refuse a schedule that ends below what one sequence needs: the job could never finish.
        long gpu = _gpu, cpu = _cpu;
        foreach (var e in events)
            if (e.Tier == "gpu") gpu = e.Budget; else cpu = e.Budget;
        if (PolicyFor(gpu, cpu) is null)
        {
            var one = _planner.Smallest;
            throw new CliException($"--pressure: after the last event (line {events[^1].Line}) the budgets (gpu {ByteSize.Format(gpu)}, " +
                $"cpu {ByteSize.Format(cpu)}) are below what one sequence needs (gpu {ByteSize.Format(one.Device)}, cpu {ByteSize.Format(one.Cpu)}): nothing could finish");
        }
    }

    public int Sent { get; private set; }

    public long GpuBudget => _gpu;
    public long CpuBudget => _cpu;

    /// <summary>Told of every event applied (for the run's timeline).</summary>
    public Action<PressureEvent>? Applied { get; set; }

    /// <summary>The planner's policy for these budgets (null when not one sequence fits).</summary>
    public BlockPolicy? PolicyFor(long gpu, long cpu) => _planner.Plan(new TierBudgets(gpu, cpu, 0));

    /// <summary>
    /// Finishes the planner's static compilation (every candidate placement's footprint and score: planning at run
    /// time is then a lookup), then starts the clock of the <c>at_ms</c> events; <c>at_step</c> events follow
    /// <see cref="OnStep"/>.
    /// </summary>
    public void Start()
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        _planner.Compiled.Wait();
        Console.Error.WriteLine($"pressure: the planner's placements were compiled ({_planner.Placements} candidates); waited {watch.Elapsed.TotalMilliseconds:F0} ms for them");
        foreach (var e in _events.Where(e => e.AtMs is not null))
            _timers.Add(new Timer(_ => Apply(e), null, TimeSpan.FromMilliseconds(e.AtMs!.Value), Timeout.InfiniteTimeSpan));
        ApplyDueSteps();
    }

    /// <summary>Counts decoding steps over the whole job (called on the tensor thread after each step).</summary>
    public void OnStep(int step)
    {
        if (step == 0) return;
        Interlocked.Increment(ref _steps);
        ApplyDueSteps();
    }

    private void ApplyDueSteps()
    {
        var stepEvents = _events.Where(e => e.AtStep is not null).ToList();
        lock (_gate)
            while (_next < stepEvents.Count && stepEvents[_next].AtStep <= Volatile.Read(ref _steps))
                Apply(stepEvents[_next++]);
    }

    private void Apply(PressureEvent e)
    {
        // The budget changes now: the time to honour it counts from here (planning included).
        var changedAt = System.Diagnostics.Stopwatch.GetTimestamp();
        lock (_gate)
        {
            if (e.Tier == "gpu") _gpu = e.Budget; else _cpu = e.Budget;
            Sent++;
            var policy = PolicyFor(_gpu, _cpu);
            _setup.SetPolicy(policy, new TierBudgets(_gpu, _cpu, 0), changedAt, System.Diagnostics.Stopwatch.GetTimestamp());
            // Recorded once the policy is on its way, not in the time to honour it.
            Applied?.Invoke(e);
            // With no sequence able to run, decoding steps stop counting: the next step-timed event comes now.
            if (policy is null)
            {
                var stepEvents = _events.Where(x => x.AtStep is not null).ToList();
                if (_next < stepEvents.Count && !ReferenceEquals(stepEvents[_next], e)) Apply(stepEvents[_next++]);
            }
        }
    }

    /// <summary>Events sent and honoured, the time to honour them, drops and requeues.</summary>
    public string Summary(ActorInfer.Actors.Engine.ActorDriver driver)
    {
        var times = driver.Honoured.Select(h => h.Elapsed.TotalMilliseconds).Order().ToArray();
        var drops = driver.Drops.ToArray();
        var median = times.Length == 0 ? 0 : times[times.Length / 2];
        var max = times.Length == 0 ? 0 : times[^1];
        var inOrder = driver.Honoured.Select(h => h.Elapsed.TotalMilliseconds.ToString("F1", System.Globalization.CultureInfo.InvariantCulture));
        string Ms(TimeSpan t) => t.TotalMilliseconds.ToString("F1", System.Globalization.CultureInfo.InvariantCulture);
        var parts = driver.Honoured.Select(h => $"{Ms(h.Arrival)}+{Ms(h.ToBoundary)}+{Ms(h.Applying)}");
        return $"pressure: {Sent} events sent, {times.Length} honoured (median {median:F1} ms, max {max:F1} ms to honour); " +
               $"{drops.Sum(d => d.Batches)} GPU batches dropped, {drops.Sum(d => d.Sequences)} sequences requeued; " +
               $"{driver.OutOfMemory.Count} device out-of-memory events; {_setup.Tiers.Device.BudgetsSetBelowHeld} budgets applied while the device held more; " +
               $"weights moved {ByteSize.Format(_setup.WeightBytesMoved)}; {_setup.Engine.Changes.Yields} decoding layers stopped for a change on its way\n" +
               $"pressure: honour times in order (ms): {string.Join(" ", inOrder)}\n" +
               $"pressure: within the new budget at the change (a budget that did not fall; honoured then), in order: " +
               $"{string.Join(" ", driver.Honoured.Select(h => h.WithinAtChange ? "yes" : "no"))}\n" +
               $"pressure: taken up (from the change until applied) in order (ms): {string.Join(" ", driver.Honoured.Select(h => Ms(h.TakeUp)))}\n" +
               $"pressure: each take-up as arrival + to the boundary + applying (ms): {string.Join(" ", parts)}\n" +
               $"pressure: where the running block was at each arrival: {string.Join(" ", driver.Honoured.Select(h => h.ArrivedIn.Replace(' ', '-')))}\n" +
               $"pressure: of each arrival, the planner's search (ms): {string.Join(" ", driver.Honoured.Select(h => h.Planning is { } p ? Ms(p) : "-"))}\n" +
               $"pressure: of each arrival, until handed to the scheduler's mailbox | in the mailbox (ms): " +
               $"{string.Join(" ", driver.Honoured.Select(h => h.Sending is { } s ? $"{Ms(s)}|{Ms(h.Arrival - s)}" : "-"))}\n" +
               $"pressure: the tensor thread's longest message on each one's way, to its arrival | to its boundary: " +
               string.Join("; ", driver.Honoured.Select(h => $"{h.BehindOnArrival} | {h.BehindToBoundary}")) + "\n" +
               $"pressure: each applying in parts: " +
               string.Join("; ", driver.Honoured.Select(h => h.ApplyingParts.Length == 0 ? "-" : h.ApplyingParts)) + "\n" +
               $"pressure: garbage collections gen0/gen1/gen2 {GC.CollectionCount(0)}/{GC.CollectionCount(1)}/{GC.CollectionCount(2)}, " +
               $"paused {GC.GetTotalPauseDuration().TotalMilliseconds:F0} ms in all; {GcDetails()}";
    }

    /// <summary>What the last collection of each kind found: its pause, the heap, what it promoted, pinned and finalizable objects.</summary>
    private static string GcDetails()
    {
        var parts = new List<string>();
        foreach (var (kind, name) in new[] { (GCKind.Ephemeral, "last ephemeral"), (GCKind.FullBlocking, "last full blocking"), (GCKind.Background, "last background") })
        {
            var info = GC.GetGCMemoryInfo(kind);
            if (info.Index == 0) continue;
            var pause = info.PauseDurations.ToArray().Sum(d => d.TotalMilliseconds);
            parts.Add(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{name} (gen{info.Generation}): paused {pause:F1} ms, heap {ByteSize.Format(info.HeapSizeBytes)}, promoted {ByteSize.Format(info.PromotedBytes)}, " +
                $"{info.PinnedObjectsCount} pinned, {info.FinalizationPendingCount} awaiting finalization"));
        }
        return parts.Count == 0 ? "no collection yet" : string.Join("; ", parts);
    }

    public void Dispose()
    {
        // An event in flight finishes before the engine it changes is disposed.
        foreach (var t in _timers)
        {
            using var stopped = new ManualResetEvent(false);
            if (t.Dispose(stopped)) stopped.WaitOne();
        }
    }
}
