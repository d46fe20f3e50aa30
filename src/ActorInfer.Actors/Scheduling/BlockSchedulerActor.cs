using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Layers;
using ActorInfer.Actors.Memory;
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
    private readonly BucketRule? _buckets;
    // The workload asked of the planner for the next block, until its policy arrives.
    private WorkloadBucket? _asked;
    private readonly HashSet<IActorRef> _observers = [];
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private BlockPolicy? _policy;
    // The budgets that came with the policy (TierBudgets.None when the sender gave none).
    private TierBudgets _budgets = TierBudgets.None;
    // Set when a policy arrives while a block runs: applied on arrival where the block is at a boundary as it stands
    // (BlockFitting.AtBoundaryNow), else at its next layer boundary (batches dropped down to what fits, weights
    // re-placed, budgets enforced), then honoured.
    private bool _pending;
    // The policies waiting to be honoured, and when the application in progress began.
    private readonly WaitingChanges _honours = new();
    private readonly PolicyApplier _applier;
    private int _blockCount;
    private RunningBlock? _block;

    private readonly MemoryWaits _memoryWaits;
    // The last decoding step's time over the layers (milliseconds; 0 until a block has run two decoding steps): the
    // layer step a budget change's time to honour is compared with.
    private double _layerStepMs;
    private double _prefillLayerStepMs;
    private long _stepStartedAt;
    private bool _stepWasDecoding;
    private StallWatch? _stallWatch;
    // Where the CPU tier's large buffers had come from before the running block began (its own share is logged with it).
    private Runtime.Tiers.HostBufferCounts? _hostBuffersAtStart;

    private sealed record CheckMemoryWait
    {
        public static readonly CheckMemoryWait Instance = new();
    }

    /// <summary>Looks again whether the tokens of the block's step have reached the host.</summary>
    private sealed record PollTokens(int Block, int Step);

    /// <summary>Goes on choosing the step's tokens after a yield to a budget change (<see cref="ChooseTokens"/>).</summary>
    private sealed record ChooseRest(int Block, int Step);

    /// <summary>Starts the step after <c>Step</c>, after a yield to a budget change (<see cref="AwaitTokens"/>).</summary>
    private sealed record StartNext(int Block, int Step);

    private sealed class StartNextBlock
    {
        public static readonly StartNextBlock Instance = new();
    }

    public BlockSchedulerActor(IInferenceEngine engine, CompletionFactory factory, IReadOnlyList<IActorRef> layers, IActorRef? planner,
        TimeSpan? maxWaitForMemory = null, BucketRule? buckets = null)
    {
        _buckets = buckets;
        _waiting = new WaitingWork(buckets is null ? null : BucketOf);
        _memoryWaits = new MemoryWaits(_waiting, maxWaitForMemory,
            every => Context.System.Scheduler.ScheduleTellRepeatedlyCancelable(every, every, Self, CheckMemoryWait.Instance, Self));
        _engine = engine;
        _factory = factory;
        _layers = layers;
        _planner = planner;
        _applier = new PolicyApplier(engine, _honours, PublishHonour, _log);
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
        if (message is PolicyHonoured { Planning: not null } h)
        {
            static string Ms(TimeSpan t) => t.TotalMilliseconds.ToString("F2", System.Globalization.CultureInfo.InvariantCulture);
            _log.Info($"budget change honoured in {Ms(h.Elapsed)} ms{(h.WithinAtChange ? " (within the budgets at the change)" : "")}: " +
                      $"planning {Ms(h.Planning.Value)}, to the scheduler {Ms(h.Arrival - h.Planning.Value)}, to a boundary {Ms(h.ToBoundary)}, " +
                      $"applying {Ms(h.Applying)} ms{(h.ApplyingParts.Length > 0 ? $" ({h.ApplyingParts})" : "")}; " +
                      $"arrived {(h.ArrivedIn.Length == 0 ? "-" : "in " + h.ArrivedIn)}; " +
                      LayerSteps(h.ArrivedIn));
        }
        Publish(message);
    }

    /// <summary>The last measured layer steps, the one of the part of a block the change arrived in first.</summary>
    private string LayerSteps(string arrivedIn)
    {
        static string Ms(double ms) => ms.ToString("F2", System.Globalization.CultureInfo.InvariantCulture);
        var decoding = _layerStepMs > 0 ? $"a decoding layer step {Ms(_layerStepMs)} ms" : "no decoding layer step measured yet";
        var prefill = _prefillLayerStepMs > 0 ? $"a prefill layer step {Ms(_prefillLayerStepMs)} ms" : "no prefill layer step measured yet";
        return arrivedIn == "prefill" ? $"{prefill}, {decoding}" : $"{decoding}, {prefill}";
    }

    protected override void PostStop()
    {
        _stallWatch?.Dispose();
        _memoryWaits.Stop();
        _block?.Dispose();
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
            // A layer in progress stops for it no longer (it may have already: its Yielded answer is behind this one).
            if (m.Signalled) _engine.Changes?.Received();
            // New budgets under the same policy are applied as any change is, and logged only in detail.
            var level = m.Policy == _policy ? Akka.Event.LogLevel.DebugLevel : Akka.Event.LogLevel.InfoLevel;
            _policy = m.Policy;
            if (m.Policy?.Bucket is { } planned && planned == _asked) _asked = null;
            // With no change waiting the tiers hold no more than the budgets in force (the tiers refuse more); budgets
            // that did not fall were therefore honoured when they changed.
            var rose = m.Budgets != TierBudgets.None && _budgets != TierBudgets.None && !_honours.AnyWaiting &&
                       m.Budgets.NotBelow(_budgets) && _engine.Within(m.Budgets);
            if (m.Budgets != TierBudgets.None) _budgets = m.Budgets;
            // From the budget change behind the policy where the sender knows it (planning and mailbox time count).
            _honours.Arrived(m.ChangedAt, m.PlannedAt, m.SentAt, withinAtChange: rose,
                arrivedIn: _block is null ? "between blocks" : _block.Step.IsPrefill ? "prefill" : "decoding");
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
                _pending = true;
                // Honoured on arrival when the running block already fits it, as placed now and as the policy will place
                // it: what it holds and will hold stays within the budgets; the placement still applies at the boundary.
                _honours.StartApplying();
                if (_policy is { } p && _engine.Within(_budgets) && BlockFitting.Fits(_engine, _block, p, _budgets) &&
                    BlockFitting.Fits(_engine, _block, p with { Runtime = null }, _budgets))
                    HonourWaiting(dropped: false);
                _log.Log(level, $"policy {(object?)m.Policy ?? "none"} takes effect at the next layer boundary of block {_block.Id}");
            }
        });
        Receive<CheckMemoryWait>(_ => FailWhatWaitedTooLong());
        Receive<StartNextBlock>(_ =>
        {
            if (_block is not null) return;
            TryStartBlock();
            WatchMemoryWait();
        });
        Receive<Observe>(m =>
        {
            if (_observers.Add(m.Observer)) Context.Watch(m.Observer);
        });
        Receive<Terminated>(m => _observers.Remove(m.ActorRef));
        Receive<GetStatus>(_ => Sender.Tell(new SchedulerStatus(_waiting.Count, _block?.Id, _policy, _decodingSteps, _layersDone)));
    }

    private void Idle()
    {
        Common();
        // A completion that arrives after its block failed or its batch was dropped: only its tensor is left to free.
        Receive<LayerProtocol.Computed>(m => m.Hidden.Dispose());
        Receive<LayerProtocol.Yielded>(m => m.Hidden.Dispose());
        Receive<LayerProtocol.ComputeFailed>(_ => { });
        Receive<ChooseRest>(_ => { });
        Receive<StartNext>(_ => { });
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
        Receive<ChooseRest>(m =>
        {
            if (_block is { } block && block.Id == m.Block && block.Step.Value == m.Step) ChooseTokens(block, mayYield: false);
        });
        Receive<StartNext>(m =>
        {
            if (_block is { } block && block.Id == m.Block && block.Step.Value == m.Step) StartStep(block, block.Step.Next());
        });
        Receive<PollTokens>(m =>
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

    /// <summary>
    /// A request's workload bucket: its context (prompt, and the tokens a resumed sequence had generated) and the tokens
    /// it has left to generate. A request the model cannot take goes in the smallest bucket (its block answers its error).
    /// </summary>
    private WorkloadBucket BucketOf(WorkItem item)
    {
        var done = item.Resume?.OutputIds.Count ?? 0;
        try
        {
            var prompt = _factory.Create(item.Request, item.Seed).PromptIds.Count;
            return _buckets!.For(prompt + done, item.Request.MaxTokens - done);
        }
        catch (RequestValidationException)
        {
            return _buckets!.For(1, 1);
        }
    }

    private void TryStartBlock()
    {
        if (_policy is null || _waiting.Count == 0) return;
        var policy = _policy;
        // The next block holds the requests of the first waiting request's bucket, under a policy planned for it.
        if (policy.Bucket is { } planned && _planner is not null && _waiting.HeadBucket is { } head && head != planned)
        {
            if (_asked != head)
            {
                _asked = head;
                _planner.Tell(new PlannerProtocol.PlanWorkload(head));
            }
            return;
        }
        var id = ++_blockCount;
        var items = _waiting.Take(policy.BlockStartSize, policy.Bucket);
        var sequences = RunningBlock.Entries(items, _factory);
        var runnable = sequences.Where(s => s.State is not null).ToList();
        var batches = runnable.Chunk(policy.GpuBatchSize).ToList();
        var block = new RunningBlock(id, policy, sequences, batches.Count) { StartedAt = System.Diagnostics.Stopwatch.GetTimestamp() };
        _hostBuffersAtStart = _engine.HostBuffers;
        try
        {
            for (var b = 0; b < batches.Count; b++)
                block.Work[b] = _engine.Open(batches[b].Select(s => s.State!).ToArray());
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            block.Dispose();
            _log.Error(ex, "block {0} could not be opened", id);
            FinishBlock(block, ex.Message);
            return;
        }
        _block = block;
        _log.Info("block {0}: {1} sequences in {2} GPU batches, policy {3}", id, items.Count, batches.Count, policy);
        Publish(new BlockStarted(id, policy, items.Count, batches.Count) { AfterDecodingSteps = _decodingSteps });
        Become(Running);
        if (batches.Count == 0)
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
        if (_pending && !ApplyAtBoundary(block)) return;
        block.Active = Enumerable.Range(0, block.Work.Length)
            .Where(b => block.Work[b] is { } w && (step.IsPrefill || !w.AllFinished))
            .Select(b => new GpuBatchIndex(b)).ToArray();
        if (block.Active.Length == 0)
        {
            FinishBlock(block, null);
            return;
        }
        if (!Guarded(block, () =>
            {
                foreach (var b in block.Active)
                    block.Hidden[b.Value] = _engine.Embed(block.Work[b.Value]!, step);
            })) return;
        if (!step.IsPrefill) _decodingSteps++;
        var now = System.Diagnostics.Stopwatch.GetTimestamp();
        // A step that followed another of the block: its time over the layers is the layer step (of decoding, or of the
        // prefill when it followed the prefill).
        if (!step.IsPrefill && _stepStartedAt != 0)
        {
            var layerStep = System.Diagnostics.Stopwatch.GetElapsedTime(_stepStartedAt, now).TotalMilliseconds / _layers.Count;
            if (_stepWasDecoding) _layerStepMs = layerStep;
            else _prefillLayerStepMs = layerStep;
        }
        _stepStartedAt = now;
        _stepWasDecoding = !step.IsPrefill;
        _stallWatch?.StepBegan(block.Id, step.Value);
        block.CursorPosition = 0;
        Dispatch(block);
    }

    private void WatchMemoryWait() => _memoryWaits.Watch(policyFits: _policy is not null);

    private void FailWhatWaitedTooLong()
    {
        var failed = _memoryWaits.Expire(policyFits: _policy is not null);
        if (failed.Count == 0) return;
        foreach (var (replyTo, finished) in failed) replyTo.Tell(finished);
        _log.Warning("{0} requests failed after waiting {1} for memory", failed.Sum(f => f.Finished.Results.Count), _memoryWaits.Limit);
        WatchMemoryWait();
    }

    private void HonourWaiting(bool dropped) => _applier.HonourWaiting(dropped);

    /// <summary>No block runs: the policy's placement and budgets apply now.</summary>
    private void ApplyBetweenBlocks()
    {
        _honours.StartApplying();
        _pending = false;
        if (!_applier.ApplyAndHonour(_policy, _budgets, null, dropped: false)) _policy = null;
        PrepareNextBlock();
    }

    /// <summary>
    /// A policy has just applied: the engine makes ready, in the background, the host buffers of the next block it
    /// would start (the waiting requests it would take), so that the block does not page-lock them itself.
    /// </summary>
    private void PrepareNextBlock()
    {
        if (_policy is not { } policy || _waiting.Count == 0) return;
        // A block of another bucket waits for its own policy (TryStartBlock): that one prepares.
        if (policy.Bucket is { } planned && _planner is not null && _waiting.HeadBucket is { } head && head != planned) return;
        var states = RunningBlock.Entries(_waiting.Peek(policy.BlockStartSize, policy.Bucket), _factory)
            .Where(e => e.State is not null).Select(e => e.State!).ToArray();
        if (_engine.Prepare(policy, states) is { } prepared)
            _log.Info($"host buffers for the next block ({states.Length} sequences, policy {policy}): {Planning.ByteSize.Format(prepared.WantedBytes)} " +
                      $"on the CPU tier, {Planning.ByteSize.Format(prepared.QueuedBytes)} to prepare in the background");
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
        _honours.StartApplying();
        _pending = false;
        var policy = _policy;
        var batches = BlockFitting.Shrink(_engine, block, policy, _budgets, atStepEnd, _honours);
        // Honoured as soon as the tiers are within the budgets (once the batches are gone, or once enough weights have
        // left the device): the bookkeeping of the drop (which entries go, checkpoints, requeueing) comes after.
        if (!_applier.ApplyAndHonour(policy, _budgets, block, dropped: batches > 0)) _policy = null;
        if (batches > 0) Requeue(block, batches, block.TakeDropped());
        PrepareNextBlock();
        if (BlockFitting.GoesOn(block, atStepEnd)) return true;
        FinishBlock(block, null);
        return false;
    }

    /// <summary>
    /// Requeues the unfinished sequences of dropped GPU batches, ahead of waiting work of the same priority, with
    /// their progress (generated tokens, log-probabilities; the sampler is counter-based), to resume by recomputing
    /// their cache from prompt + generated tokens.
    /// </summary>
    private void Requeue(RunningBlock block, int droppedBatches, List<BlockEntry> dropped)
    {
        var (checkpoints, tokens) = _waiting.RequeueDropped(block.Id, dropped);
        // Told before any requeued sequence can finish, so each enqueuer sees a sequence's checkpoint before its result.
        foreach (var (replyTo, checkpointed) in checkpoints) replyTo.Tell(checkpointed);
        _log.Info("block {0}: dropped {1} GPU batches, {2} sequences requeued", block.Id, droppedBatches, dropped.Count);
        Publish(new BatchesDropped(block.Id, droppedBatches, dropped.Count, tokens));
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
    /// requeued with its progress (what it has generated so far stays valid whatever position failed), the block
    /// ends, and the next blocks run at half the size until a policy arrives.
    /// </summary>
    private void OutOfMemory(RunningBlock block, string error)
    {
        var held = _engine.DeviceBytesHeld;
        var batches = 0;
        for (var b = block.Work.Length - 1; b >= 0; b--)
            if (block.Drop(b)) batches++;
        var requeued = block.TakeDropped();
        if (batches > 0) Requeue(block, batches, requeued);
        var before = _policy;
        _policy = _policy?.Halved();
        _log.Warning("block {0}: the device ran out of memory ({1}); {2} sequences requeued, policy {3} -> {4}", block.Id, error,
            requeued.Count, before?.ToString() ?? "none", _policy?.ToString() ?? "none");
        Publish(new DeviceOutOfMemory(block.Id, held, requeued.Count, error));
        FinishBlock(block, null);
    }

    /// <summary>The zig-zag order within a step: for each layer, for each active GPU batch.</summary>
    private void Advance(RunningBlock block)
    {
        block.CursorPosition++;
        if (block.CursorPosition < _layers.Count * block.Active.Length)
        {
            // A pending policy applies at the start of the next layer: within one layer step of its arrival.
            if (_pending && block.CursorPosition % block.Active.Length == 0 && !ApplyAtBoundary(block)) return;
            Dispatch(block);
            return;
        }
        ChooseTokens(block);
    }

    /// <summary>
    /// The end of a step: each batch's output head chooses its tokens. Between two batches the scheduler yields to a
    /// budget change on its way: it applies as at the step's end (<see cref="BlockFitting.AtBoundaryNow"/>), batches
    /// whose head has not run dropped first, and <see cref="ChooseRest"/> goes on with the rest.
    /// </summary>
    /// <param name="mayYield">False once it has yielded in this step: the change it yielded to is ahead of it in the mailbox.</param>
    private void ChooseTokens(RunningBlock block, bool mayYield = true)
    {
        var yielded = false;
        if (!Guarded(block, () =>
            {
                foreach (var b in block.Active)
                {
                    if (block.Hidden[b.Value] is not { } hidden) continue;
                    if (mayYield && _engine.Changes is { Waiting: true } signal && block.Tokens.Any(t => t is not null))
                    {
                        signal.Yielded();
                        yielded = true;
                        return;
                    }
                    using (hidden)
                        block.Tokens[b.Value] = _engine.BeginChooseTokens(block.Work[b.Value]!, hidden, block.Step);
                    block.Hidden[b.Value] = null;
                }
            })) return;
        if (yielded) Self.Tell(new ChooseRest(block.Id, block.Step.Value));
        else AwaitTokens(block);
    }

    /// <summary>
    /// The end of a step: the tokens are on their way from the device. Until they arrive the scheduler keeps reading
    /// its mail (a policy that arrives meanwhile applies now: batches its tokens finish give up their cache, others are
    /// dropped with their tokens abandoned and resume from their progress), then appends them and starts the next step.
    /// </summary>
    private void AwaitTokens(RunningBlock block)
    {
        if (_pending && !ApplyAtBoundary(block, atStepEnd: true)) return;
        var waiting = false;
        if (!Guarded(block, () => waiting = block.Tokens.Any(t => t is { IsReady: false }))) return;
        if (waiting)
        {
            Self.Tell(new PollTokens(block.Id, block.Step.Value));
            return;
        }
        if (!Guarded(block, () =>
            {
                for (var b = 0; b < block.Tokens.Length; b++)
                    if (block.Tokens[b] is { } tokens)
                    {
                        block.Tokens[b] = null;
                        using (tokens) tokens.Complete();
                    }
            })) return;
        // A budget change on its way applies before the next step's embeddings (StartStep), not after them.
        if (_engine.Changes is { Waiting: true } signal)
        {
            signal.Yielded();
            Self.Tell(new StartNext(block.Id, block.Step.Value));
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
        _stepWasDecoding = false;
        // A policy that arrived while the block ran and was not applied yet applies now (and is honoured, if it was
        // waiting): the block holds nothing any more. Otherwise nothing changed since the last one applied.
        if (_pending) ApplyBetweenBlocks();
        foreach (var group in results.GroupBy(r => r.ReplyTo))
            group.Key.Tell(new Finished(block.Id, group.Select(r => r.Item).ToArray()));
        var measured = block.Measured();
        var hostBuffers = HostBuffersOf(block);
        if (block.Policy.PredictedTokensPerSecond is { } predicted && measured.Tokens > 0)
            _log.Info($"block {block.Id}: {measured.Tokens} tokens in {measured.Seconds:F3} s: {measured.TokensPerSecond:F1} token/s measured, " +
                      $"{predicted:F1} predicted for a full block of {block.Policy.BlockSize} ({block.Sequences.Count} sequences ran){hostBuffers}");
        Publish(new BlockFinished(block.Id, results.Count, block.Step.Value)
        {
            Tokens = measured.Tokens, Seconds = measured.Seconds, PredictedTokensPerSecond = block.Policy.PredictedTokensPerSecond,
            Policy = block.Policy,
        });
        Become(Idle);
        // The next block starts from the mailbox, behind what arrived while this one ran: a policy waiting there
        // applies before the next block opens (not after, by dropping from it), and is not held up by the opening.
        Self.Tell(StartNextBlock.Instance);
        WatchMemoryWait();
    }

    /// <summary>
    /// The block's large host buffers by where they came from (prepared in the background, or made inline: on CUDA
    /// page-locked on this thread), for its log line; empty when it took none.
    /// </summary>
    private string HostBuffersOf(RunningBlock block)
    {
        if (_engine.HostBuffers is not { } now || _hostBuffersAtStart is not { } before) return "";
        var d = now - before;
        if (d.WorkerFailures > 0)
            _log.Warning("block {0}: the CPU tier's background worker failed {1} times ({2}); the block made what it needed itself",
                block.Id, d.WorkerFailures, d.LastFailure ?? "");
        if (d.ServedPreparedBytes == 0 && d.InlineBytes == 0 && d.ReusedBytes == 0 && d.PreparedBytes == 0 && d.ReleasedBytes == 0) return "";
        static string F(long bytes) => Planning.ByteSize.Format(bytes);
        return $"; host buffers: {F(d.ServedPreparedBytes)} from the prepared pool, {F(d.InlineBytes)} made inline " +
               $"(touching {d.InlineTouching.TotalSeconds:F2} s, registering {d.InlineRegistering.TotalSeconds:F2} s), {F(d.ReusedBytes)} reused; " +
               $"in the background meanwhile {F(d.PreparedBytes)} prepared ({d.Preparing.TotalSeconds:F2} s), " +
               $"{F(d.ReleasedBytes)} released ({d.Releasing.TotalSeconds:F2} s)";
    }

    private void Publish(object message)
    {
        foreach (var o in _observers) o.Tell(message);
    }
}
