using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Layers;
using ActorInfer.Actors.Planner;
using ActorInfer.Model.Generation;
using Akka.Actor;
using Akka.Event;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;
using static TorchSharp.torch;

namespace ActorInfer.Actors.Scheduling;

/// <summary>
/// Idle until there is both queued work and a policy; Running while a block goes through the layers. It runs on
/// the tensor dispatcher itself because it embeds and samples (the work before the first and after the last layer).
/// </summary>
internal sealed class BlockSchedulerActor : Diagnostics.TensorThreadActor
{
    // One name per message type, not a new string per message.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Type, string> Names = new();

    protected override string Describe(object message) => Names.GetOrAdd(message.GetType(), t => $"scheduler {t.Name}");

    private readonly IInferenceEngine _engine;
    private readonly CompletionFactory _factory;
    private readonly IReadOnlyList<IActorRef> _layers;
    private readonly IActorRef? _planner;
    private long _decodingSteps;
    private long _layersDone;
    private readonly WaitingWork _waiting;
    private readonly BlockOpening _opening;
    private readonly BlockDrops _drops;
    private readonly BlockReports _reports;
    private readonly HashSet<IActorRef> _observers = [];
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly PolicyInForce _inForce;
    private RunningBlock? _block;

    private readonly MemoryWaits _memoryWaits;
    private readonly LayerSteps _layerSteps = new();
    private StallWatch? _stallWatch;
    private readonly DeviceTurns? _turns;

    private sealed class StartNextBlock
    {
        public static readonly StartNextBlock Instance = new();
    }

    public BlockSchedulerActor(IInferenceEngine engine, CompletionFactory factory, IReadOnlyList<IActorRef> layers, IActorRef? planner,
        TimeSpan? maxWaitForMemory = null, BucketRule? buckets = null, DeviceTurns? turns = null) : base(engine.ComputeStream, engine.HostShare)
    {
        _turns = turns;
        _waiting = new WaitingWork(buckets is { } rule ? item => BlockOpening.BucketOf(item, factory, rule) : null, engine.RegeneratesResumed);
        _memoryWaits = new MemoryWaits(_waiting, maxWaitForMemory,
            every => Context.System.Scheduler.ScheduleTellRepeatedlyCancelable(every, every, Self, MemoryWaits.CheckMemoryWait.Instance, Self),
            _log);
        _engine = engine;
        _factory = factory;
        _layers = layers;
        _planner = planner;
        _inForce = new PolicyInForce(engine, PublishHonour, _log);
        _opening = new BlockOpening(engine, factory, _waiting, planner, _log);
        _drops = new BlockDrops(engine, _waiting, Publish, _log);
        _reports = new BlockReports(engine, Publish, _log);
        Become(Idle);
    }

    protected override void PreStart()
    {
        _planner?.Tell(new PlannerProtocol.Subscribe(Self, _engine.Changes));
        // A budget change's first answer must not wait for its code to be compiled.
        _ = Diagnostics.AheadCompilation.Prepare();
        _stallWatch = new StallWatch(Logging.GetLogger(Context.System, "scheduler (stall watch)"));
    }

    /// <summary>Publishes the applier's honour records; a budget change's is logged with its parts and the layer step.</summary>
    private void PublishHonour(object message)
    {
        if (message is PolicyHonoured { Planning: not null } h) _log.Info(_layerSteps.HonourLine(h));
        Publish(message);
    }

    protected override void PostStop()
    {
        _stallWatch?.Dispose();
        _memoryWaits.Stop();
        _block?.Dispose();
        _turns?.Leave(Self);
    }

    private void Common()
    {
        Receive<Enqueue>(m =>
        {
            foreach (var item in m.Items) _waiting.Add(item, Sender);
            if (_block is null) TryStartBlock();
            WatchMemoryWait();
        });
        Receive<Withdraw>(m =>
        {
            var withdrawn = _waiting.Withdraw(m.Keys as IReadOnlySet<string> ?? m.Keys.ToHashSet());
            if (withdrawn > 0) _log.Info("{0} queued requests withdrawn", withdrawn);
        });
        Receive<PlannerProtocol.PolicyChanged>(m =>
        {
            var level = _inForce.Arrived(m, _block);
            _opening.Arrived(m.Policy);
            WatchMemoryWait();
            if (_block is null)
            {
                ApplyBetweenBlocks();
                TryStartBlock();
            }
            else if (BlockFitting.AtBoundaryNow(_engine, _block))
            {
                // No computation of the block has started where the policy would wait for a boundary: it applies now.
                _log.Log(level, $"policy {(object?)m.Policy ?? "none"} applies on arrival in block {_block.Id}");
                ApplyAtBoundary(_block, atStepEnd: _block.Tokens.Any(t => t is not null));
            }
            else
            {
                _inForce.AwaitBoundary(_block);
                _log.Log(level, $"policy {(object?)m.Policy ?? "none"} takes effect at the next layer boundary of block {_block.Id}");
            }
        });
        Receive<MemoryWaits.CheckMemoryWait>(_ => _memoryWaits.Expire(policyFits: _inForce.Policy is not null));
        Receive<StartNextBlock>(_ => StartIfIdle());
        Receive<SchedulerProtocol.TurnFree>(_ => StartIfIdle());
        Receive<Observe>(m =>
        {
            if (_observers.Add(m.Observer)) Context.Watch(m.Observer);
        });
        Receive<Terminated>(m => _observers.Remove(m.ActorRef));
        Receive<GetStatus>(_ => Sender.Tell(new SchedulerStatus(_waiting.Count, _block?.Id, _inForce.Policy, _decodingSteps, _layersDone, _engine.TokensGenerated)));
    }

    private void Idle()
    {
        Common();
        // A completion that arrives after its block failed or its batch was dropped: only its tensor is left to free.
        Receive<LayerProtocol.Computed>(m => m.Hidden.Dispose());
        Receive<LayerProtocol.Yielded>(m => m.Hidden.Dispose());
        Receive<LayerProtocol.ComputeFailed>(_ => { });
        Receive<StepEnds.ChooseRest>(_ => { });
        Receive<StepEnds.StartNext>(_ => { });
    }

    private void Running()
    {
        Common();
        Receive<LayerProtocol.Computed>(m =>
        {
            var block = _block!;
            // The computation of a batch dropped on its way (a policy applied on arrival), maybe of an earlier block.
            if (Stale(block, m.Batch, m.Work))
            {
                m.Hidden.Dispose();
                return;
            }
            if (m.Layer != block.Cursor.Layer || m.Batch != block.Cursor.Batch || m.Step != block.Step)
            {
                _log.Error("unexpected completion of {0} {1} {2}", m.Layer, m.Batch, m.Step);
                m.Hidden.Dispose();
                return;
            }
            block.Hidden[m.Batch.Value] = m.Hidden;
            _layersDone++;
            _stallWatch?.Moved();
            Advance(block);
        });
        Receive<LayerProtocol.Yielded>(m =>
        {
            var block = _block!;
            if (Stale(block, m.Batch, m.Work) || m.Layer != block.Cursor.Layer || m.Batch != block.Cursor.Batch || m.Step != block.Step)
            {
                // Its batch was dropped by the change it stopped for.
                m.Hidden.Dispose();
                return;
            }
            // The change it stopped for has applied (it was ahead of this in the mailbox) and kept the batch: the layer
            // runs again, to its end this time.
            block.Hidden[m.Batch.Value] = m.Hidden;
            Dispatch(block, mayYield: false);
        });
        Receive<StepEnds.ChooseRest>(m =>
        {
            if (_block is { } block && block.Id == m.Block && block.Step.Value == m.Step) ChooseTokens(block, mayYield: false);
        });
        Receive<StepEnds.StartNext>(m =>
        {
            if (_block is { } block && block.Id == m.Block && block.Step.Value == m.Step) StartStep(block, block.Step.Next());
        });
        Receive<StepEnds.PollTokens>(m =>
        {
            if (_block is { } block && block.Id == m.Block && block.Step.Value == m.Step && block.Tokens.Any(t => t is not null))
                AwaitTokens(block);
        });
        Receive<LayerProtocol.ComputeFailed>(m =>
        {
            if (Stale(_block!, m.Batch, m.Work)) return;
            if (m.OutOfMemory)
            {
                OutOfMemory(_block!, m.Error);
                return;
            }
            _log.Error("block {0} failed at {1} {2} {3}: {4}", _block!.Id, m.Layer, m.Batch, m.Step, m.Error);
            FinishBlock(_block, m.Error);
        });
    }

    private static bool Stale(RunningBlock block, GpuBatchIndex batch, IGpuBatch work) =>
        batch.Value >= block.Work.Length || !ReferenceEquals(block.Work[batch.Value], work);

    private void StartIfIdle()
    {
        if (_block is not null) return;
        TryStartBlock();
        WatchMemoryWait();
    }

    private void TryStartBlock()
    {
        if (_inForce.Policy is null || _waiting.Count == 0)
        {
            _turns?.Leave(Self);
            return;
        }
        // One queue without priorities: the block waits for the device's turn (told TurnFree when it comes).
        if (_turns is not null && !_turns.TryTake(Self)) return;
        if (_opening.Open(_inForce.Policy, out var failure) is not { } block)
        {
            // Its bucket's policy is asked for: the turn goes on meanwhile, and is asked again when the policy arrives.
            _turns?.Leave(Self);
            return;
        }
        if (failure is not null)
        {
            FinishBlock(block, failure);
            return;
        }
        _block = block;
        _reports.Started(block, _decodingSteps);
        Become(Running);
        if (block.Work.Length == 0)
        {
            FinishBlock(block, null);
            return;
        }
        StartStep(block, TokenStep.Prefill);
    }

    /// <summary>Embeds every batch still generating and sends the first (layer 0, first batch) computation.</summary>
    private void StartStep(RunningBlock block, TokenStep step)
    {
        block.Step = step;
        block.Active = [];
        if (_inForce.Pending && !ApplyAtBoundary(block)) return;
        block.Active = StepEnds.Active(block, step);
        if (block.Active.Length == 0)
        {
            FinishBlock(block, null);
            return;
        }
        if (!Guarded(block, () => StepEnds.Embed(_engine, block, step))) return;
        if (!step.IsPrefill) _decodingSteps++;
        _layerSteps.Began(step, _layers.Count);
        _stallWatch?.StepBegan(block.Id, step.Value);
        block.CursorPosition = 0;
        Dispatch(block);
    }

    private void WatchMemoryWait() => _memoryWaits.Watch(policyFits: _inForce.Policy is not null);

    /// <summary>No block runs: the policy's placement and budgets apply now.</summary>
    private void ApplyBetweenBlocks()
    {
        _inForce.ApplyBetweenBlocks();
        _opening.Prepare(_inForce.Policy);
    }

    /// <summary>
    /// At a layer boundary of the running block (or the start of a step): drops GPU batches from the end until the
    /// block fits the pending policy (its size, and its placement within the budgets), applies the policy's
    /// placement and budgets, and honours it. False when no batch of the step is left (the block has finished).
    /// </summary>
    /// <param name="atStepEnd">
    /// The step's tokens are on their way (<see cref="AwaitTokens"/>): no batch computes again in this step, and a batch
    /// whose pending tokens finish every one of its sequences counts as finished (its cache goes, its tokens still land).
    /// </param>
    private bool ApplyAtBoundary(RunningBlock block, bool atStepEnd = false)
    {
        var batches = _inForce.ApplyAtBoundary(block, atStepEnd);
        if (batches > 0) _drops.Requeue(block, batches, block.TakeDropped());
        _opening.Prepare(_inForce.Policy);
        if (BlockFitting.GoesOn(block, atStepEnd)) return true;
        FinishBlock(block, null);
        return false;
    }

    /// <summary>Runs the scheduler's own tensor work (embedding, choosing tokens); a failure ends the block, an out-of-memory is pressure.</summary>
    private bool Guarded(RunningBlock block, Action work)
    {
        try
        {
            work();
            return true;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            if (ActorInfer.Runtime.Tiers.DeviceMemory.IsOutOfMemory(ex)) OutOfMemory(block, ex.Message);
            else
            {
                _log.Error(ex, "block {0} failed at {1}", block.Id, block.Step);
                FinishBlock(block, ex.Message);
            }
            return false;
        }
    }

    /// <summary>
    /// The device ran out of memory: a pressure event, not a failure. Every unfinished sequence of the block is
    /// requeued with its progress, the block ends, and the next blocks run at half the size until a policy arrives.
    /// </summary>
    private void OutOfMemory(RunningBlock block, string error)
    {
        _inForce.Policy = _drops.OutOfMemory(block, error, _inForce.Policy);
        FinishBlock(block, null);
    }

    /// <summary>The zig-zag order within a step: for each layer, for each active GPU batch.</summary>
    private void Advance(RunningBlock block)
    {
        block.CursorPosition++;
        if (block.CursorPosition < _layers.Count * block.Active.Length)
        {
            // A pending policy applies at the start of the next layer: within one layer step of its arrival.
            if (_inForce.Pending && block.CursorPosition % block.Active.Length == 0 && !ApplyAtBoundary(block)) return;
            Dispatch(block);
            return;
        }
        ChooseTokens(block);
    }

    /// <summary>
    /// The end of a step: each batch's output head chooses its tokens. Between two batches the scheduler yields to a
    /// budget change on its way: it applies as at the step's end (<see cref="BlockFitting.AtBoundaryNow"/>), batches
    /// whose head has not run dropped first, and <see cref="StepEnds.ChooseRest"/> goes on with the rest.
    /// </summary>
    /// <param name="mayYield">False once it has yielded in this step: the change it yielded to is ahead of it in the mailbox.</param>
    private void ChooseTokens(RunningBlock block, bool mayYield = true)
    {
        var yielded = false;
        if (!Guarded(block, () => yielded = StepEnds.ChooseTokens(_engine, block, mayYield))) return;
        if (yielded) Self.Tell(new StepEnds.ChooseRest(block.Id, block.Step.Value));
        else AwaitTokens(block);
    }

    /// <summary>
    /// The end of a step: the tokens are on their way from the device. Until they arrive the scheduler keeps reading
    /// its mail (a policy that arrives meanwhile applies now: batches its tokens finish give up their cache, others are
    /// dropped with their tokens abandoned and resume from their progress), then appends them and starts the next step.
    /// </summary>
    private void AwaitTokens(RunningBlock block)
    {
        if (_inForce.Pending && !ApplyAtBoundary(block, atStepEnd: true)) return;
        var waiting = false;
        if (!Guarded(block, () => waiting = block.Tokens.Any(t => t is { IsReady: false }))) return;
        if (waiting)
        {
            Self.Tell(new StepEnds.PollTokens(block.Id, block.Step.Value));
            return;
        }
        if (!Guarded(block, () => StepEnds.Land(block))) return;
        if (block.Landed() is { } landed) Context.System.EventStream.Publish(landed);
        // A budget change on its way applies before the next step's embeddings (StartStep), not after them.
        if (_engine.Changes is { Waiting: true } signal)
        {
            signal.Yielded();
            Self.Tell(new StepEnds.StartNext(block.Id, block.Step.Value));
            return;
        }
        StartStep(block, block.Step.Next());
    }

    private void Dispatch(RunningBlock block, bool mayYield = true)
    {
        var cursor = block.Cursor;
        _stallWatch?.At(block.CursorPosition);
        var hidden = block.Hidden[cursor.Batch.Value]!;
        block.Hidden[cursor.Batch.Value] = null;
        _layers[cursor.Layer.Value].Tell(new LayerProtocol.Compute(cursor.Batch, block.Step, block.Work[cursor.Batch.Value]!, hidden) { MayYield = mayYield });
    }

    private void FinishBlock(RunningBlock block, string? error)
    {
        var results = block.Results(_factory, error);
        block.Dispose();
        _block = null;
        _stallWatch?.Idle();
        _layerSteps.Idle();
        // A policy that arrived while the block ran and was not applied yet applies now (and is honoured, if it was
        // waiting): the block holds nothing any more; so does a rise of the weights' device share that the block left for
        // its end. Otherwise nothing changed since the last one applied.
        if (_inForce.Pending || _inForce.RaiseDeferred) ApplyBetweenBlocks();
        _reports.Finished(block, results);
        // Told after the block's end is published: whoever observes both models hears this block end before the next starts.
        _turns?.Release(Self);
        Become(Idle);
        // The next block starts from the mailbox, behind what arrived while this one ran: a policy waiting there
        // applies before the next block opens (not after, by dropping from it), and is not held up by the opening.
        Self.Tell(StartNextBlock.Instance);
        WatchMemoryWait();
    }

    private void Publish(object message)
    {
        foreach (var o in _observers) o.Tell(message);
    }
}
