using System.Runtime.CompilerServices;
using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using BlockSession = ActorInfer.Runtime.Schedule.BlockSession;
using OffloadRuntime = ActorInfer.Runtime.Schedule.OffloadRuntime;
using static TorchSharp.torch;

namespace ActorInfer.Actors.Engine;

/// <summary>
/// The offloading runtime behind the actors: the scheduler's calls (embed each batch, each decoder layer over each
/// batch, choose tokens for each batch) are the runtime's schedule positions, run in the order the runtime
/// prefetches for (a call out of that order is an error, not a silent slowdown). Hidden states stay in the homes
/// the policy gives them (GPU, CPU or disk), so the tensors this engine hands to the actors are empty tokens.
/// </summary>
/// <param name="deviceBudget">The budget that governs the runtime's device tier: the GPU's, or host memory's on a CPU node.</param>
public sealed class OffloadedEngine(OffloadRuntime runtime, Func<IReadOnlyList<int>, string> decode, Tier deviceBudget = Tier.Gpu) : IInferenceEngine
{
    private readonly List<Batch> _pending = [];
    private Session? _session;
    // The last block's warm-up of its fits: joined before the runtime it reads is disposed.
    private Task _warming = Task.CompletedTask;
    private CancellationTokenSource _warmingCancel = new();

    public ModelConfig Config => runtime.Config;

    public OffloadRuntime Runtime => runtime;

    private long _tokens;

    /// <summary>Tokens chosen so far, over every block (for run timelines).</summary>
    public long TokensGenerated => Interlocked.Read(ref _tokens);

    public bool RegeneratesResumed => runtime.BatchInvariant;

    /// <summary>Called on the tensor thread when a step of the running block has chosen its tokens (0 = prefill).</summary>
    public Action<int>? StepDone { get; set; }

    /// <summary>The model's own CUDA stream on a node of several models; null: the legacy default stream.</summary>
    public ActorInfer.Runtime.Cuda.ComputeStream? ComputeStream { get; set; }

    public Scheduling.HostShare? HostShare { get; set; }

    public IGpuBatch Open(IReadOnlyList<SequenceState> sequences)
    {
        var batch = new Batch(this, sequences);
        _pending.Add(batch);
        return batch;
    }

    public Tensor Embed(IGpuBatch batch, TokenStep step)
    {
        var b = (Batch)batch;
        var session = SessionFor(b);
        if (!session.Block.InStep || session.Block.Step.Value != step.Value)
        {
            if (session.Block.InStep) session.Block.EndStep();
            var active = session.Batches.Where(x => !x.Disposed && (step.IsPrefill || !x.AllFinished)).Select(x => x.Index).ToArray();
            session.Block.Begin(step, active);
        }
        session.Block.Run(0, b.Index);
        return empty(0);
    }

    public Tensor RunLayer(LayerIndex layer, IGpuBatch batch, Tensor hidden, TokenStep step) => Run(layer, batch, mayYield: false)!;

    public Tensor? RunLayerOrYield(LayerIndex layer, IGpuBatch batch, Tensor hidden, TokenStep step) => Run(layer, batch, mayYield: true);

    /// <summary>The decoder layer's schedule position (after the input embedding's); null when it stopped at a yield point.</summary>
    private Tensor? Run(LayerIndex layer, IGpuBatch batch, bool mayYield)
    {
        var b = (Batch)batch;
        return SessionFor(b).Block.Run(layer.Value + 1, b.Index, mayYield) ? empty(0) : null;
    }

    public ActorInfer.Runtime.Schedule.ChangeSignal Changes => runtime.Changes;

    public void ChooseTokens(IGpuBatch batch, Tensor hidden, TokenStep step)
    {
        using var tokens = BeginChooseTokens(batch, hidden, step);
        tokens.Complete();
    }

    public PendingTokens BeginChooseTokens(IGpuBatch batch, Tensor hidden, TokenStep step)
    {
        var b = (Batch)batch;
        var session = SessionFor(b);
        session.Block.Run(session.Block.ScheduleLayers - 1, b.Index);
        var tokens = session.Block.TakeTokens(b.Index) ?? PendingTokens.Done();
        // The step's last head ends it; so does dropping the batches whose heads had not run (Batch.Dispose).
        var stepDone = new StrongBox<bool>(!session.Block.InStep);
        session.LastHead = stepDone;
        return tokens.Then(appended =>
        {
            Interlocked.Add(ref _tokens, appended);
            if (stepDone.Value) StepDone?.Invoke(step.Value);
        });
    }

    public long? DeviceBytesHeld => runtime.Tiers.Device.BytesHeld;

    public ActorInfer.Runtime.Tiers.HostBufferPreparation? Prepare(BlockPolicy policy, IReadOnlyList<SequenceState> sequences) =>
        sequences.Count == 0 ? null
        : runtime.Tiers.Cpu.Prepare(runtime.HostBuffersFor(sequences, policy.Runtime, Math.Min(policy.GpuBatchSize, sequences.Count)));

    public ActorInfer.Runtime.Tiers.HostBufferCounts? HostBuffers => runtime.Tiers.Cpu.HostBuffers;

    public bool AtLayerBoundary => _session is not { } s || s.Block.AtLayerBoundary;

    public ActorInfer.Planning.Policy? Placement => runtime.Policy;

    /// <summary>Sequences in the running block's batches that are still held (not dropped or freed), for run timelines.</summary>
    public int RunningSequences => _session is { } s ? s.Batches.Where(b => !b.Disposed).Sum(b => b.Sequences.Count) : 0;

    /// <summary>Weight bytes moved between tiers by policy changes, over the engine's life.</summary>
    public long WeightBytesMoved { get; private set; }

    public bool Fits(IReadOnlyList<IGpuBatch> remaining, BlockPolicy policy, TierBudgets budgets)
    {
        var placement = policy.Runtime ?? runtime.Policy;
        var batches = remaining.Cast<Batch>().Where(b => !b.Disposed && b.Session is not null).ToArray();
        var session = batches.FirstOrDefault()?.Session ?? _session;
        var held = runtime.PlanRunning(session?.Block, batches.Select(b => b.Index).ToArray(), placement);
        var (device, cpu) = Budgets(budgets);
        return (device is not { } d || held.Device <= d) && (cpu is not { } c || held.Cpu <= c);
    }

    public bool Within(TierBudgets budgets)
    {
        var (device, cpu) = Budgets(budgets);
        return (device is not { } d || runtime.Tiers.Device.BytesHeld <= d) && (cpu is not { } c || runtime.Tiers.Cpu.BytesHeld <= c);
    }

    public void Apply(BlockPolicy policy, TierBudgets budgets, Action? moved = null)
    {
        var (device, cpu) = Budgets(budgets);
        var tiers = runtime.Tiers;
        // Weights growing toward a rise the running block left to its end stop growing at any new placement or budgets (the
        // scheduler starts them again where the rise is still left to the end); a fall under them lets go of what they kept.
        runtime.GrowTowards(null, 0);
        _growth = null;
        // A policy raised from a firm one: the firm placement is the one in force, and the weights it raises grow in as the
        // blocks stream them (their CPU homes kept), so that a fall back to the firm budget lets go of them at once.
        var grows = device is not null && policy.GrowsFrom is { } from && policy.Runtime is { } raised && raised != from &&
                    runtime.CanGrowTowards(raised) && Scheduling.BlockFitting.OnlyWeightsDiffer(from, raised);
        var wanted = grows ? policy.GrowsFrom : policy.Runtime;
        var fell = device is { } f && f < tiers.Device.BudgetBytes;
        // Raise budgets before moving (weights coming onto a tier need its room), lower them after.
        if (device is { } d && d > tiers.Device.BudgetBytes) tiers.Device.SetBudget(d);
        if (cpu is { } c && c > tiers.Cpu.BudgetBytes) tiers.Cpu.SetBudget(c);
        // New budgets under the policy in force (every budget change is published) move nothing: no placement is planned;
        // unless they fell while weights had grown beyond the placement in force (those go back to their host copies).
        var settle = fell && runtime.GrownBytes > 0;
        var running = _session is { } open && open.Open > 0 ? open : null;
        if (wanted is { } placement && placement != runtime.Policy)
            WeightBytesMoved += runtime.Replace(placement, running?.Block, moved);
        else if (settle && running is not null && device is { } fallen)
        {
            // The same placement under a lower budget: of the grown weights only those go that the rest of the block no
            // longer leaves room for (to their host copies, nothing copied); the others stay and the growth goes on.
            runtime.TrimGrowth(fallen - RunningPeak(running), running.Block);
            moved?.Invoke();
        }
        else if (settle)
            WeightBytesMoved += runtime.Replace(runtime.Policy, null, moved);
        if (device is { } d2) tiers.Device.SetBudget(d2);
        if (cpu is { } c2) tiers.Cpu.SetBudget(c2);
        if (grows) GrowWeightsTowards(policy.Runtime!, budgets);
    }

    // The placement the weights grow toward beyond the one in force, and the budgets they grow within (null: none); armed for
    // the running block and again for each block as it opens, until the next Apply.
    private (ActorInfer.Planning.Policy Target, TierBudgets Budgets)? _growth;

    public void GrowWeightsTowards(ActorInfer.Planning.Policy target, TierBudgets budgets)
    {
        if (Budgets(budgets).Device is null)
        {
            _growth = null;
            runtime.GrowTowards(null, 0);
            return;
        }
        _growth = (target, budgets);
        if (_session is { } s && s.Open > 0) ArmGrowth(s);
        else runtime.GrowTowards(null, 0);
    }

    /// <summary>Lets the weights grow toward <see cref="_growth"/>'s target within what the rest of the block leaves of the budget.</summary>
    private void ArmGrowth(Session s)
    {
        if (_growth is not { } g || Budgets(g.Budgets).Device is not { } d) return;
        runtime.GrowTowards(g.Target, d - RunningPeak(s));
    }

    /// <summary>What the rest of the block holds on the device at its peak under the placement in force: the weights may grow into the rest.</summary>
    private long RunningPeak(Session s) =>
        runtime.PlanRunning(s.Block, s.Batches.Where(b => !b.Disposed).Select(b => b.Index).ToArray(), runtime.Policy).Device;

    /// <summary>Weight bytes kept on the device beyond the placement in force while the running block grows toward a rise.</summary>
    public long WeightBytesGrown => runtime.GrownBytes;

    /// <summary>The device and CPU tiers' budgets among <paramref name="budgets"/> (null where unknown: zero).</summary>
    private (long? Device, long? Cpu) Budgets(TierBudgets budgets)
    {
        long? device = budgets[deviceBudget] > 0 ? budgets[deviceBudget] : null;
        long? cpu = deviceBudget != Tier.Cpu && budgets.Cpu > 0 ? budgets.Cpu : null;
        return (device, cpu);
    }

    /// <summary>The block a batch belongs to: the batches opened together since the last block form the next one.</summary>
    private Session SessionFor(Batch b)
    {
        if (b.Session is not null) return b.Session;
        if (!_pending.Contains(b)) throw new InvalidOperationException("this batch was not opened on this engine or was disposed");
        var batches = _pending.ToArray();
        _pending.Clear();
        var block = runtime.OpenBlock(batches.SelectMany(x => x.Sequences).ToArray(), decode, gpuBatchSize: batches[0].Sequences.Count);
        // The scheduler reads its mail while a step's tokens come back (BeginChooseTokens).
        block.DeferTokens = true;
        var session = new Session(block, batches);
        for (var i = 0; i < batches.Length; i++)
        {
            batches[i].Session = session;
            batches[i].Index = i;
            if (!block.Sequences(i).SequenceEqual(batches[i].Sequences))
                throw new InvalidOperationException("the block's GPU batch size differs from the runtime policy's");
        }
        _session = session;
        ArmGrowth(session);
        WarmFits(block, batches.Length);
        return session;
    }

    /// <summary>
    /// Computes, off the tensor thread, what the block's first k batches would hold under each weight placement the
    /// runtime planner may choose: a budget change then checks whether the block fits by lookup instead of planning
    /// placements while the change waits to be honoured.
    /// </summary>
    private void WarmFits(BlockSession block, int batches)
    {
        var p = runtime.Policy;
        // The placement in force, and every one the planner may choose from any base: its 10% steps down from all
        // the weights (but the disk share) on the device.
        var disk = (int)Math.Round(p.Weights.Disk * 100);
        var allOnDevice = ActorInfer.Planning.TierFractions.FromPercent(100 - disk, 0);
        var weights = RuntimePlacementPlanner.WeightCandidates(allOnDevice, deviceBudget).Prepend(p.Weights).Distinct().ToArray();
        var token = _warmingCancel.Token;
        // One warm-up at a time, after the previous block's (whatever became of it).
        _warming = _warming.ContinueWith(_ =>
        {
            // Down to none left (k = 0): the weights alone, what a fall that drops the whole block must fit.
            for (var k = batches; k >= 0 && !token.IsCancellationRequested; k--)
            {
                var remaining = Enumerable.Range(0, k).ToArray();
                foreach (var w in weights)
                    runtime.PlanRunning(block, remaining, new ActorInfer.Planning.Policy(p.GpuBatchSize, p.NumGpuBatches, w, p.Cache, p.Activations) { CpuAttention = p.CpuAttention });
            }
        }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
    }

    /// <summary>Frees the running block, if any; the runtime belongs to whoever created it.</summary>
    public void Dispose()
    {
        _warmingCancel.Cancel();
        // Only a warm-up: whatever it did not compute is computed when asked, so its failure (if any) does not matter here.
        _warming.ContinueWith(_ => { }, TaskScheduler.Default).Wait();
        _warmingCancel = new CancellationTokenSource();
        _warming = Task.CompletedTask;
        _session?.Block.Dispose();
        _session = null;
    }

    private sealed class Session(BlockSession block, Batch[] batches)
    {
        public BlockSession Block { get; } = block;
        public Batch[] Batches { get; } = batches;
        public int Open { get; set; } = batches.Length;
        /// <summary>Whether the tokens of the last output head run end their step (set when a drop ends it later).</summary>
        public StrongBox<bool>? LastHead { get; set; }
    }

    private sealed class Batch(OffloadedEngine engine, IReadOnlyList<SequenceState> sequences) : IGpuBatch
    {
        public IReadOnlyList<SequenceState> Sequences { get; } = sequences;
        public bool AllFinished => Sequences.All(s => s.IsFinished);
        public Session? Session { get; set; }
        public int Index { get; set; }

        public bool Disposed { get; private set; }

        /// <summary>Frees this batch's share of the block now (a batch dropped mid-block); the last one frees the block.</summary>
        public void Dispose()
        {
            if (Disposed) return;
            Disposed = true;
            engine._pending.Remove(this);
            if (Session is null) return;
            if (Session.Open > 1)
            {
                var inStep = Session.Block.InStep;
                Session.Block.DropNow(Index);
                if (inStep && !Session.Block.InStep && Session.LastHead is { } head) head.Value = true;
            }
            if (--Session.Open == 0)
            {
                Session.Block.Dispose();
                if (ReferenceEquals(engine._session, Session)) engine._session = null;
            }
            Session = null;
        }
    }
}
