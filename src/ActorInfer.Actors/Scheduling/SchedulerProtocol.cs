using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Planner;
using ActorInfer.Model.Generation;
using Akka.Actor;

namespace ActorInfer.Actors.Scheduling;

/// <summary>
/// The block-scheduler actor: forms blocks from queued requests (block size = the policy's GPU batch size x
/// number of GPU batches), drives the zig-zag order through the layer actors (prefill, then each decoding
/// step: for each layer, for each GPU batch), and reports finished sequences. A new policy takes effect at the
/// next block start, never inside a running block.
/// </summary>
public static class SchedulerProtocol
{
    public interface ICommand;

    /// <summary>
    /// A request to run: <paramref name="Key"/> is unique on the node, <paramref name="Id"/> is the result's id,
    /// <paramref name="Seed"/> is used when the request names none.
    /// </summary>
    /// <param name="Priority">Higher runs first; equal priorities run in arrival order.</param>
    public sealed record WorkItem(string Key, string Id, CompletionRequest Request, long Seed, int Priority = 0)
    {
        /// <summary>Where a sequence dropped from a running block stopped; it resumes by recomputing its cache.</summary>
        public Checkpoint? Resume { get; init; }

        /// <summary>The request's JSON body as it was persisted: what a gateway hands to a worker on another node.</summary>
        public string? RequestJson { get; init; }
    }

    /// <summary>
    /// The progress of a dropped sequence: its generated tokens (with their log-probabilities) and its prompt
    /// log-probabilities. The sampler is counter-based, so the seed and the token count are its whole state.
    /// </summary>
    public sealed record Checkpoint(IReadOnlyList<int> OutputIds, IReadOnlyList<float> OutputLogprobs, IReadOnlyList<float?>? PromptLogprobs);

    /// <summary>One sequence dropped from a running block and requeued, and where it stopped.</summary>
    public sealed record CheckpointedItem(string Key, Checkpoint Checkpoint);

    /// <summary>
    /// Sent to the enqueuer when GPU batches are dropped: the checkpoints of all of its sequences that were requeued,
    /// at once, before any of their results. An enqueuer that keeps them durably can resume the sequences from there
    /// after a crash; one that does not may ignore the message.
    /// </summary>
    public sealed record Checkpointed(int Block, IReadOnlyList<CheckpointedItem> Items);

    /// <summary>Removes queued requests (a cancelled job); requests already in a running block finish.</summary>
    public sealed record Withdraw(IReadOnlyCollection<string> Keys) : ICommand;

    /// <summary>Queues requests; the sender receives <see cref="Finished"/> for them, block by block.</summary>
    public sealed record Enqueue(IReadOnlyList<WorkItem> Items) : ICommand;

    /// <summary>Sends <see cref="BlockStarted"/> and <see cref="BlockFinished"/> to the observer (progress, tests).</summary>
    public sealed record Observe(IActorRef Observer) : ICommand;

    public sealed record GetStatus : ICommand
    {
        public static readonly GetStatus Instance = new();
    }

    /// <summary>Under one queue without priorities (<see cref="DeviceTurns"/>): the device is free for the scheduler's next block.</summary>
    public sealed record TurnFree : ICommand
    {
        public static readonly TurnFree Instance = new();
    }

    /// <param name="DecodingSteps">Decoding steps started over the scheduler's life (a block's prefill is not one).</param>
    /// <param name="LayersDone">Layer computations of GPU batches finished over the scheduler's life, prefill included: the
    /// finest measure of progress (a long prefill or an offloaded layer still moves it).</param>
    /// <param name="TokensGenerated">Tokens the engine chose over its life (<see cref="Engine.IInferenceEngine.TokensGenerated"/>).</param>
    public sealed record SchedulerStatus(int Queued, int? RunningBlock, BlockPolicy? NextPolicy, long DecodingSteps = 0, long LayersDone = 0,
        long TokensGenerated = 0);

    /// <summary>
    /// Tokens a step chose for streaming requests (<see cref="Model.Generation.CompletionRequest.Stream"/>), published on the
    /// node's event stream as they land on the host: the gateway sends them to the callers before their blocks finish.
    /// </summary>
    public sealed record TokensLanded(IReadOnlyList<LandedTokens> Sequences);

    /// <summary>
    /// A request's output ids from index <paramref name="From"/> on, as chosen so far (a resumed request starts again at
    /// 0: its checkpointed ids come first), and their log-probabilities where the request asks for them.
    /// </summary>
    public sealed record LandedTokens(string Key, int From, IReadOnlyList<int> Ids, IReadOnlyList<float>? Logprobs = null);

    /// <summary>One finished request: its JSONL result line (or error line), keyed as it was enqueued.</summary>
    public sealed record FinishedItem(string Key, string ResultLine);

    /// <summary>Sent to the enqueuer when a block is done: all of the block's sequences that it enqueued, at once.</summary>
    public sealed record Finished(int Block, IReadOnlyList<FinishedItem> Results);

    public sealed record BlockStarted(int Block, BlockPolicy Policy, int Sequences, int GpuBatches)
    {
        /// <summary>Decoding steps the scheduler had started before this block (<see cref="SchedulerStatus.DecodingSteps"/>); not part of equality.</summary>
        public long AfterDecodingSteps { get; init; }

        public bool Equals(BlockStarted? other) =>
            other is not null && Block == other.Block && Policy == other.Policy && Sequences == other.Sequences && GpuBatches == other.GpuBatches;

        public override int GetHashCode() => HashCode.Combine(Block, Policy, Sequences, GpuBatches);
    }

    public sealed record BlockFinished(int Block, int Sequences, int Steps)
    {
        /// <summary>Tokens generated in the block (by the sequences that finished in it) and the seconds it ran.</summary>
        public int Tokens { get; init; }
        public double Seconds { get; init; }
        /// <summary>The planner's prediction for a full block of its policy, when it made one.</summary>
        public double? PredictedTokensPerSecond { get; init; }
        public BlockPolicy? Policy { get; init; }
    }

    /// <summary>
    /// A policy (and the budget behind it) is honoured: the running block holds no more sequences than it allows.
    /// <paramref name="Elapsed"/> runs from the budget change behind the policy (from its arrival when the sender did
    /// not say when that was) to the tiers holding no more than the budgets: zero for a budget that did not fall below
    /// what they held (<see cref="WithinAtChange"/>).
    /// </summary>
    public sealed record PolicyHonoured(TimeSpan Elapsed, bool Dropped)
    {
        /// <summary>The budgets in force at the scheduler when it honoured (null when it has none).</summary>
        public Memory.TierBudgets? Budgets { get; init; }

        /// <summary>The budgets did not fall below what the tiers held when they changed (no earlier change was waiting): honoured then.</summary>
        public bool WithinAtChange { get; init; }

        /// <summary>From the budget change until the scheduler had applied the policy (equal to <see cref="Elapsed"/> unless <see cref="WithinAtChange"/>).</summary>
        public TimeSpan TakeUp { get; init; }

        /// <summary>Of <see cref="TakeUp"/>: from the budget change to the policy's arrival at the scheduler (planning, mailbox).</summary>
        public TimeSpan Arrival { get; init; }

        /// <summary>Of <see cref="Arrival"/>: choosing the policy (the planner's search); null when the sender did not say.</summary>
        public TimeSpan? Planning { get; init; }

        /// <summary>Of <see cref="Arrival"/>: from the budget change until the sender handed the policy to the mailbox (planning included); null when not told.</summary>
        public TimeSpan? Sending { get; init; }

        /// <summary>Of <see cref="TakeUp"/>: from the arrival to the layer boundary (or step end) where it was applied; zero when applied on arrival.</summary>
        public TimeSpan ToBoundary { get; init; }

        /// <summary>Of <see cref="TakeUp"/>: applying it there (drops, weights re-placed) until the block held no more than the budgets.</summary>
        public TimeSpan Applying { get; init; }

        /// <summary>Where the running block was when the policy arrived: "prefill", "decoding" or "between blocks".</summary>
        public string ArrivedIn { get; init; } = "";

        /// <summary>The longest message the tensor thread ran while the policy was on its way to the scheduler.</summary>
        public string BehindOnArrival { get; init; } = "";

        /// <summary>The longest message the tensor thread ran between the arrival and the boundary where it applied.</summary>
        public string BehindToBoundary { get; init; } = "";

        /// <summary>Of <see cref="Applying"/>: its parts and their times (dropping, requeueing, re-placing); empty when there were none.</summary>
        public string ApplyingParts { get; init; } = "";
    }

    /// <summary>GPU batches dropped from a running block to honour a smaller policy; their sequences were requeued.</summary>
    /// <summary>
    /// The device ran out of memory in a block: its unfinished sequences were requeued with their progress and
    /// the next blocks run at half the size until a policy arrives (the device's bytes held at that moment given).
    /// </summary>
    public sealed record DeviceOutOfMemory(int Block, long? BytesHeld, int Requeued, string Error);

    public sealed record BatchesDropped(int Block, int Batches, int Sequences, int TokensToRecompute);

    /// <param name="layers">The layer actors, in layer order.</param>
    /// <param name="planner">The policy-planner actor to subscribe to; null to take <see cref="PlannerProtocol.PolicyChanged"/> from anyone.</param>
    /// <param name="maxWaitForMemory">How long queued requests wait while no policy fits one sequence before they fail; null: forever.</param>
    /// <param name="buckets">How requests are grouped by length into blocks planned for them; null: any request joins any block.</param>
    /// <param name="turns">The device's turns, shared with the node's other models under one queue without priorities; null: none.</param>
    public static Props Props(IInferenceEngine engine, CompletionFactory factory, IReadOnlyList<IActorRef> layers, IActorRef? planner,
        TimeSpan? maxWaitForMemory = null, BucketRule? buckets = null, DeviceTurns? turns = null) =>
        Akka.Actor.Props.Create(() => new BlockSchedulerActor(engine, factory, layers, planner, maxWaitForMemory, buckets, turns))
            .WithDispatcher(ActorInferSettings.TensorDispatcher);
}
