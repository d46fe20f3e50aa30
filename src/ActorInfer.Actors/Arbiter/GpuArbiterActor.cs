using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using Akka.Actor;
using Akka.Event;
using static ActorInfer.Actors.Arbiter.ArbiterProtocol;

namespace ActorInfer.Actors.Arbiter;

internal sealed class GpuArbiterActor : ReceiveActor, IWithTimers
{
    private sealed record Poll
    {
        public static readonly Poll Instance = new();
    }

    /// <summary>What the arbiter knows of one model. Its scheduler tells it of blocks before it answers a later status
    /// (one sender, one receiver: in order), so a status naming a running block comes after that block's start.</summary>
    private sealed class Held(Tenant tenant)
    {
        public Tenant Tenant { get; } = tenant;
        public int Queued { get; set; }
        public WorkloadBucket? NextBucket { get; set; }
        public int? Block { get; set; }
        public int BlockSequences { get; set; }
        public int DroppedInBlock { get; set; }
        public WorkloadBucket? BlockBucket { get; set; }
        public bool BlockRunning { get; set; }
        public long Demand { get; set; }
        public long? Share { get; set; }
        /// <summary>
        /// The largest rise sent that the model's scheduler may not have applied yet (null: none): until it honours it, or
        /// a later fall, it may still move weights in up to that.
        /// </summary>
        public long? RisePending { get; set; }
        /// <summary>A static model's share, fixed once it had work.</summary>
        public long? Fixed { get; set; }
        public long Drops { get; set; }
        public long Requeues { get; set; }
        public long Recomputed { get; set; }
        public int Running => BlockRunning ? Math.Max(0, BlockSequences - DroppedInBlock) : 0;
        public Queue<(long At, long Bytes)> Recent { get; } = new();

        /// <summary>
        /// The largest demand within the last <paramref name="window"/>: a model's share falls only once its demand has
        /// stayed lower that long. What the arbiter knows of a queue is a moment old, and a block the scheduler starts
        /// meanwhile would be dropped by a fall that reaches it after the start.
        /// </summary>
        public long Lasting(long demand, TimeSpan window)
        {
            var now = System.Diagnostics.Stopwatch.GetTimestamp();
            Recent.Enqueue((now, demand));
            while (Recent.Count > 1 && System.Diagnostics.Stopwatch.GetElapsedTime(Recent.Peek().At, now) > window) Recent.Dequeue();
            return Recent.Max(r => r.Bytes);
        }
    }

    private readonly ArbiterProtocol.Settings _settings;
    private readonly IActorRef _deviceMemory;
    private readonly Held[] _held;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private TierBudgets? _device;

    public GpuArbiterActor(ArbiterProtocol.Settings settings, IActorRef deviceMemory, IReadOnlyList<Tenant> tenants)
    {
        _settings = settings;
        _deviceMemory = deviceMemory;
        _held = tenants.Select(t => new Held(t)).ToArray();

        Receive<MemoryProtocol.Subscribed>(m => Device(m.Budgets));
        Receive<MemoryProtocol.BudgetChanged>(m => Device(m.Budgets));
        Receive<Poll>(_ =>
        {
            foreach (var h in _held) h.Tenant.Scheduler.Tell(SchedulerProtocol.GetStatus.Instance);
        });
        Receive<SchedulerProtocol.SchedulerStatus>(m =>
        {
            if (Of(Sender) is not { } h) return;
            h.Queued = m.Queued;
            h.NextBucket = m.NextPolicy?.Bucket;
            h.BlockRunning = m.RunningBlock is { } running && running == h.Block;
            Divide();
        });
        Receive<SchedulerProtocol.BlockStarted>(m =>
        {
            if (Of(Sender) is not { } h) return;
            (h.Block, h.BlockSequences, h.DroppedInBlock, h.BlockBucket, h.BlockRunning) = (m.Block, m.Sequences, 0, m.Policy.Bucket, true);
            // The block's sequences left the queue: until the next status they count once, as running.
            h.Queued = Math.Max(0, h.Queued - m.Sequences);
            Divide();
        });
        Receive<SchedulerProtocol.BatchesDropped>(m =>
        {
            if (Of(Sender) is not { } h) return;
            h.Drops += m.Batches;
            h.Requeues += m.Sequences;
            h.Recomputed += m.TokensToRecompute;
            if (m.Block == h.Block)
            {
                h.DroppedInBlock += m.Sequences;
                h.Queued += m.Sequences;
            }
        });
        Receive<SchedulerProtocol.BlockFinished>(m =>
        {
            if (Of(Sender) is not { } h || m.Block != h.Block) return;
            h.BlockRunning = false;
            Divide();
        });
        Receive<GetState>(_ => Sender.Tell(new State(_settings.ComputeTier, _device ?? TierBudgets.None,
            _held.Select(h => new TenantState(h.Tenant.Name, h.Tenant.Priority, h.Share ?? 0, h.Demand, h.Queued, h.Running, h.Tenant.Floor,
                h.Tenant.Ceiling, h.Drops, h.Requeues, h.Recomputed, h.Fixed)).ToArray())));
        // A model honoured a budget (a fall among them): what it gave back may let another's share rise now. A rise it was
        // sent is settled once it honours that rise (its tiers then enforce it) or its latest share (it never applies it).
        Receive<SchedulerProtocol.PolicyHonoured>(m =>
        {
            if (Of(Sender) is { } h && h.RisePending is { } rise && m.Budgets is { } b &&
                (b[_settings.ComputeTier] >= rise || b[_settings.ComputeTier] == h.Share))
                h.RisePending = null;
            Divide();
        });
        // The schedulers' other news (results, checkpoints) is not the arbiter's.
        ReceiveAny(_ => { });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    protected override void PreStart()
    {
        _deviceMemory.Tell(new MemoryProtocol.Subscribe(Self));
        foreach (var h in _held) h.Tenant.Scheduler.Tell(new SchedulerProtocol.Observe(Self));
        Timers.StartPeriodicTimer("poll", Poll.Instance, _settings.PollInterval);
    }

    private Held? Of(IActorRef sender) => _held.FirstOrDefault(h => h.Tenant.Scheduler.Equals(sender));

    private void Device(TierBudgets budgets)
    {
        var previous = _device;
        _device = budgets;
        // The tiers that are not divided reach every model as the node has them; on a GPU node the CPU tier is split by
        // the models' weights (two models that each took the node's whole CPU budget would take more than the host has).
        foreach (var tier in new[] { Tier.Gpu, Tier.Cpu, Tier.Disk })
        {
            if (tier == _settings.ComputeTier || previous is not null && previous[tier] == budgets[tier]) continue;
            var split = tier == Tier.Cpu && _settings.ComputeTier == Tier.Gpu && budgets[tier] > 0
                ? SplitByWeights(budgets[tier], _held.Select(h => h.Tenant.WeightBytes).ToArray())
                : null;
            for (var i = 0; i < _held.Length; i++)
                _held[i].Tenant.Memory.Tell(new MemoryProtocol.Share(tier, split?[i] ?? budgets[tier]));
        }
        Divide();
    }

    private void Divide()
    {
        if (_device is null) return;
        var claims = new Claim[_held.Length];
        for (var i = 0; i < _held.Length; i++)
        {
            var h = _held[i];
            // Requests that arrive between the scheduler's answer and the share's arrival there may start a block: a reserve of
            // sequences above what is counted keeps such a block within the share.
            // Counted on a ladder of sizes 1.5x apart: a share that followed every arrival would re-plan the other models
            // (and re-place their weights and remake their host buffers) for each request of a burst.
            // Blocks run one at a time and a block's cache is freed before the next one opens: the model needs room for the
            // larger of its running block and the block its queue makes next, not for both together.
            var sequences = Ladder(Math.Max(h.Queued, h.Running) + _settings.ReserveSequences);
            h.Demand = h.Lasting(h.Tenant.BytesFor(new Demand(sequences, Longer(h.BlockRunning ? h.BlockBucket : null, h.NextBucket))),
                _settings.ReleaseAfter);
            claims[i] = new Claim(h.Tenant.Name, h.Tenant.Priority, h.Demand, h.Fixed ?? h.Tenant.Floor, h.Fixed ?? h.Tenant.Ceiling, h.Running > 0);
        }
        var budget = _device[_settings.ComputeTier];
        // No budget known (0): every model is as unbounded as a node alone would be.
        var shares = budget > 0 ? Arbitration.Divide(budget, claims).ToArray() : new long[_held.Length];
        // A share of nothing is still a budget (0 would mean none is known): one byte, which no policy fits.
        if (budget > 0)
        {
            for (var i = 0; i < shares.Length; i++) shares[i] = Math.Max(1, shares[i]);
            RiseIntoFreedBytes(budget, shares);
        }
        for (var i = 0; i < _held.Length; i++)
        {
            var h = _held[i];
            var share = shares[i];
            if (h.Tenant.Static && h.Fixed is null && budget > 0 && h.Queued + h.Running > 0)
            {
                h.Fixed = share;
                _log.Info("arbiter: {0}'s share is fixed at {1} of {2} (static: planned once for the memory it has with work)", h.Tenant.Name,
                    Planning.ByteSize.FormatBinary(share), Planning.ByteSize.FormatBinary(budget));
            }
            if (h.Share is { } last && (share == last || share > last && share - last < _settings.ChangeThreshold)) continue;
            _log.Debug("arbiter: {0} gets {1} of {2} (demand {3})", h.Tenant.Name, Planning.ByteSize.FormatBinary(share),
                Planning.ByteSize.FormatBinary(budget), Planning.ByteSize.FormatBinary(h.Demand));
            if (h.Share is { } before && share > before) h.RisePending = Math.Max(h.RisePending ?? 0, share);
            h.Share = share;
            h.Tenant.Memory.Tell(new MemoryProtocol.Share(_settings.ComputeTier, share));
        }
    }

    /// <summary>A budget in proportion to the models' weights (evenly where none are known).</summary>
    internal static long[] SplitByWeights(long budget, long[] weights)
    {
        var total = weights.Sum();
        return weights.Select(w => total > 0 ? Math.Max(1, (long)((double)budget * w / total)) : Math.Max(1, budget / weights.Length)).ToArray();
    }

    /// <summary>
    /// Falls go at once; a rise takes only what the others do not hold: each other model counts at the larger of its new
    /// share and the bytes its tiers hold now (a fall is honoured at its scheduler's next layer boundary, and until then
    /// its bytes are still on the device). Higher priorities rise first. What a rise cannot take yet it takes at a later
    /// division (the status polls, or the fall's honour), never falling below the share it has. A model also counts at
    /// the budget its tiers enforce now and at a rise it was sent and has not honoured: until its scheduler applies a later
    /// fall it may still move weights in up to that rise.
    /// </summary>
    private void RiseIntoFreedBytes(long budget, long[] shares)
    {
        if (_held.Any(h => h.Share is null || h.Tenant.Held is null)) return;
        var held = _held.Select(h => Math.Max(h.Tenant.Held!(), Math.Max(h.RisePending ?? 0, h.Tenant.Allowed?.Invoke() ?? 0))).ToArray();
        var rising = Enumerable.Range(0, _held.Length).Where(i => shares[i] > _held[i].Share!.Value).ToArray();
        if (rising.Length == 0) return;
        var counted = new long[_held.Length];
        for (var i = 0; i < _held.Length; i++)
            counted[i] = Math.Max(rising.Contains(i) ? _held[i].Share!.Value : shares[i], held[i]);
        foreach (var i in rising.OrderByDescending(i => _held[i].Tenant.Priority).ThenBy(i => i))
        {
            var others = counted.Where((_, j) => j != i).Sum();
            shares[i] = Math.Clamp(budget - others, _held[i].Share!.Value, shares[i]);
            counted[i] = Math.Max(shares[i], held[i]);
        }
    }

    /// <summary>The least of 1, 2, 3, 4, 6, 8, 12, 16, ... (powers of two and 1.5 times them) that is at least <paramref name="n"/>.</summary>
    internal static int Ladder(int n)
    {
        if (n <= 2) return n;
        var power = 2;
        while (true)
        {
            if (n <= power) return power;
            if (n <= power + power / 2) return power + power / 2;
            if (power > int.MaxValue / 4) return n;
            power *= 2;
        }
    }

    private static WorkloadBucket? Longer(WorkloadBucket? a, WorkloadBucket? b) =>
        a is not { } x ? b : b is not { } y ? a : x.Capacity >= y.Capacity ? x : y;
}
