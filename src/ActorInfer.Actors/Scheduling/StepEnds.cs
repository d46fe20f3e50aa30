using ActorInfer.Actors.Engine;

namespace ActorInfer.Actors.Scheduling;

/// <summary>
/// The scheduler's own work at the two ends of a step of the running block, before the first layer and after the
/// last: the batches that take part embed their tokens, then each batch's output head chooses its next ones and they
/// land in their sequences. The scheduler runs the tensor work guarded (a failure ends the block, an out-of-memory is
/// pressure) and says when the step goes on; where it yields to its mail meanwhile, it goes on with a message to
/// itself (stale once its block or step has moved on).
/// </summary>
internal static class StepEnds
{
    /// <summary>Looks again whether the tokens of the block's step have reached the host.</summary>
    public sealed record PollTokens(int Block, int Step);

    /// <summary>Goes on choosing the step's tokens after a yield to a budget change (<see cref="ChooseTokens"/>).</summary>
    public sealed record ChooseRest(int Block, int Step);

    /// <summary>Starts the step after <c>Step</c>, after a yield to a budget change once the step's tokens landed.</summary>
    public sealed record StartNext(int Block, int Step);

    /// <summary>The batches that take part in <paramref name="step"/>: every open one at the prefill, those still generating after.</summary>
    public static GpuBatchIndex[] Active(RunningBlock block, TokenStep step) =>
        Enumerable.Range(0, block.Work.Length)
            .Where(b => block.Work[b] is { } w && (step.IsPrefill || !w.AllFinished))
            .Select(b => new GpuBatchIndex(b)).ToArray();

    /// <summary>Each active batch's input hidden state of <paramref name="step"/>, for its first layer.</summary>
    public static void Embed(IInferenceEngine engine, RunningBlock block, TokenStep step)
    {
        foreach (var b in block.Active)
            block.Hidden[b.Value] = engine.Embed(block.Work[b.Value]!, step);
    }

    /// <summary>
    /// Each active batch's output head begins choosing its tokens (<see cref="RunningBlock.Tokens"/>), the batches whose
    /// head has run skipped. True when it stopped between two batches, where <paramref name="mayYield"/>, to yield to a
    /// budget change on its way (the change's signal told so); the batches whose head has not run keep their hidden state.
    /// </summary>
    public static bool ChooseTokens(IInferenceEngine engine, RunningBlock block, bool mayYield)
    {
        foreach (var b in block.Active)
        {
            if (block.Hidden[b.Value] is not { } hidden) continue;
            if (mayYield && engine.Changes is { Waiting: true } signal && block.Tokens.Any(t => t is not null))
            {
                signal.Yielded();
                return true;
            }
            using (hidden)
                block.Tokens[b.Value] = engine.BeginChooseTokens(block.Work[b.Value]!, hidden, block.Step);
            block.Hidden[b.Value] = null;
        }
        return false;
    }

    /// <summary>Appends the step's tokens, all on the host, to their sequences.</summary>
    public static void Land(RunningBlock block)
    {
        for (var b = 0; b < block.Tokens.Length; b++)
            if (block.Tokens[b] is { } tokens)
            {
                block.Tokens[b] = null;
                using (tokens) tokens.Complete();
            }
    }
}
