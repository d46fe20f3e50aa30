using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;

namespace ActorInfer.Actors.Scheduling;

/// <summary>
/// The running block against a new policy: whether it fits, whether it is at a boundary as it stands, and shrinking
/// it (finished batches' caches first, then GPU batches from the end) until it fits. The scheduler applies the
/// placement, honours and requeues.
/// </summary>
internal static class BlockFitting
{
    /// <summary>
    /// Whether what is left of the block fits <paramref name="policy"/>: no more running sequences than its block size
    /// (not asked, on an engine with a placement, of a policy planned under conservative sizing or for another workload
    /// bucket than the block's), and its placement of the remaining batches within the budgets. No policy: only an empty
    /// block fits.
    /// </summary>
    public static bool Fits(IInferenceEngine engine, RunningBlock block, BlockPolicy? policy, TierBudgets budgets)
    {
        if (policy is null) return block.Running == 0 && block.Work.All(w => w is null);
        // Under conservative sizing, on an engine that accounts its tiers, only memory decides: a smaller geometry alone
        // drops nothing. Nor does the geometry planned for the next block's requests of another bucket (longer prompts
        // make smaller blocks): the running block's sequences are not of that bucket.
        if (block.Running > policy.BlockSize && !((policy.KeepsRunningBlocks || OtherBucket(block.Policy, policy)) && engine.Placement is not null))
            return false;
        var remaining = block.Work.Where(w => w is not null).Select(w => w!).ToArray();
        return engine.Fits(remaining, policy, budgets);
    }

    /// <summary>
    /// Whether the running block is at a boundary as it stands, between two messages: its step's tokens are on their
    /// way (no batch computes again in the step), or the computation sent last has not begun a layer on the engine (it
    /// is the layer's first batch and waits in its layer's mailbox, or the block has one batch and the engine is
    /// between two of its layers). Batches dropped now take the computation addressed to them with them (it is not run).
    /// </summary>
    public static bool AtBoundaryNow(IInferenceEngine engine, RunningBlock block)
    {
        if (block.Tokens.Any(t => t is not null)) return true;
        var batches = block.Active.Length;
        return batches > 0 && engine.AtLayerBoundary && (batches == 1 || block.CursorPosition % batches == 0);
    }

    /// <summary>How much faster a new policy must be predicted to run than the block's own for the block to start again under it.</summary>
    public const double RestartGain = 1.5;

    /// <summary>
    /// Whether the running block is better started again under <paramref name="policy"/> than finished under its own
    /// placement and geometry: a block's batches can only leave, so what is left of it keeps running as it was placed
    /// (a cache on the CPU stays there, GPU batches keep their size). Its sequences keep their tokens when dropped (they
    /// resume from their checkpoints, recomputing only their cache), so starting again costs little; it is chosen when
    /// the new policy is predicted to run at least <see cref="RestartGain"/> times faster over what is left of the block.
    /// A policy that differs from the block's only in where its weights are is never a reason to start again: the block
    /// takes its weights' placement as it runs (or at its end, for a rise). Nor is a policy planned under conservative
    /// sizing (<see cref="BlockPolicy.KeepsRunningBlocks"/>).
    /// </summary>
    public static bool Restarts(RunningBlock block, BlockPolicy? policy)
    {
        if (policy is null || block.Policy.PredictedTokensPerSecond is not { } running || policy.PredictedTokensPerSecond is not { } next ||
            running <= 0 || policy == block.Policy || policy.KeepsRunningBlocks || OnlyWeightsDiffer(block.Policy, policy) ||
            OtherBucket(block.Policy, policy))
            return false;
        var generation = block.Policy.Bucket?.GenerationLength ?? 0;
        var done = block.Step.IsPrefill ? 0.0 : generation > 0 ? Math.Min(1.0, (double)block.Step.Value / generation) : 1.0;
        return next >= RestartGain * running / Math.Max(1 - done, 0.05);
    }

    /// <summary>
    /// Whether <paramref name="next"/> was planned for another workload bucket than the running block's policy: the policy of
    /// the queue's next requests, whose predicted pace says nothing of the running block's sequences (a bucket of shorter
    /// prompts runs more tokens a second, and none of the block's sequences would run under it).
    /// </summary>
    private static bool OtherBucket(BlockPolicy running, BlockPolicy next) =>
        running.Bucket is { } a && next.Bucket is { } b && a != b;

    private static bool OnlyWeightsDiffer(BlockPolicy a, BlockPolicy b) =>
        a.Runtime is { } x && b.Runtime is { } y && a.GpuBatchSize == b.GpuBatchSize && a.NumGpuBatches == b.NumGpuBatches && OnlyWeightsDiffer(x, y);

    internal static bool OnlyWeightsDiffer(ActorInfer.Planning.Policy x, ActorInfer.Planning.Policy y) =>
        x.Reshaped(x.GpuBatchSize, x.NumGpuBatches, y.Weights) == y;

    /// <summary>
    /// Whether <paramref name="next"/> differs from the placement in force only by more weights on the device: a rise that
    /// a running block need not take (copying gigabytes of weights in holds the tensor thread for seconds, and a fall
    /// behind it in the mailbox waits that long). It is applied when the block ends.
    /// </summary>
    public static bool MovesWeightsIn(ActorInfer.Planning.Policy now, ActorInfer.Planning.Policy next) =>
        OnlyWeightsDiffer(now, next) && next.Weights.Gpu > now.Weights.Gpu;

    /// <summary>
    /// Frees the caches of finished batches, then drops GPU batches from the end, until the block fits (every batch not
    /// finished, where the block starts again under the policy: <see cref="Restarts"/>); the dropped
    /// batches' sequences are then the block's to requeue (<see cref="RunningBlock.TakeDropped"/>). Returns how many
    /// batches were dropped.
    /// </summary>
    /// <param name="atStepEnd">
    /// The step's tokens are on their way: no batch computes again in this step, and a batch whose pending tokens finish
    /// every one of its sequences counts as finished (its cache goes, its tokens still land).
    /// </param>
    public static int Shrink(IInferenceEngine engine, RunningBlock block, BlockPolicy? policy, TierBudgets budgets, bool atStepEnd,
        WaitingChanges honours)
    {
        bool Finished(int b) => block.Work[b] is { } w &&
            (atStepEnd && block.Tokens[b] is not null ? w.Sequences.All(s => s.FinishesWithNextToken)
                : w.AllFinished && !block.Active.Any(a => a.Value == b));
        var freed = 0;
        for (var b = block.Work.Length - 1; b >= 0; b--)
            if (Finished(b) && !Fits(engine, block, policy, budgets))
            {
                block.Work[b]!.Dispose();
                block.Work[b] = null;
                freed++;
            }
        if (freed > 0) honours.Lap($"free {freed} finished");
        var batches = 0;
        var dropping = 0L;
        var restart = Restarts(block, policy);
        for (var b = block.Work.Length - 1; b >= 0 && (restart || !Fits(engine, block, policy, budgets)); b--)
        {
            if (restart && (block.Work[b] is null || Finished(b))) continue;
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            if (block.Drop(b)) batches++;
            dropping += System.Diagnostics.Stopwatch.GetTimestamp() - started;
        }
        honours.Lap(batches > 0 ? $"{(restart ? "start again: drop" : "fit and drop")} {batches} (the drops {WaitingChanges.Ms(dropping)} ms)" : "fit");
        return batches;
    }

    /// <summary>
    /// After a shrink, the step goes on with the batches left, from the same layer. False when nothing of the block is
    /// left to run or to land (it has finished).
    /// </summary>
    public static bool GoesOn(RunningBlock block, bool atStepEnd)
    {
        var layer = block.Active.Length == 0 ? 0 : block.CursorPosition / block.Active.Length;
        block.Active = block.Active.Where(a => block.Work[a.Value] is not null).ToArray();
        block.CursorPosition = layer * block.Active.Length;
        // At a step's end, tokens still on their way (of batches whose cache went) land before the block can finish.
        return block.Active.Length > 0 || block.Work.Any(w => w is not null && !w.AllFinished) || (atStepEnd && block.Tokens.Any(t => t is not null));
    }
}
