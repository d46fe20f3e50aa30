using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Planner;
using ActorInfer.Model.Generation;
using Akka.Actor;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;
using static TorchSharp.torch;

namespace ActorInfer.Actors.Scheduling;

/// <summary>One accepted request in a running block: its work item, who to answer, its state (null when it failed validation) or its error line.</summary>
internal sealed record BlockEntry(WorkItem Item, IActorRef ReplyTo, SequenceState? State, string? Error);

/// <summary>
/// The block the scheduler runs: its sequences, each GPU batch's work, hidden state and pending tokens, and where the
/// step is (the active batches in zig-zag order, the cursor). Owned by the scheduler on the tensor thread.
/// </summary>
internal sealed class RunningBlock(int id, BlockPolicy policy, List<BlockEntry> sequences, int batches) : IDisposable
{
    public int Id { get; } = id;
    public BlockPolicy Policy { get; } = policy;
    public List<BlockEntry> Sequences { get; } = sequences;
    public IGpuBatch?[] Work { get; } = new IGpuBatch?[batches];
    public Tensor?[] Hidden { get; } = new Tensor?[batches];
    // Tokens chosen at the end of the step, not yet appended.
    public PendingTokens?[] Tokens { get; } = new PendingTokens?[batches];
    public TokenStep Step { get; set; }
    // Output ids of each streaming entry (by key) already published (TokensLanded); entries leave the block when dropped.
    private Dictionary<string, int>? _streamed;

    /// <summary>
    /// The ids each streaming entry chose since the last call (null when none did): the callers of requests that
    /// stream read them before the block finishes.
    /// </summary>
    public TokensLanded? Landed()
    {
        List<LandedTokens>? landed = null;
        foreach (var entry in Sequences)
        {
            if (entry.State is not { Request.Stream: true } state) continue;
            _streamed ??= [];
            var from = _streamed.GetValueOrDefault(entry.Item.Key);
            var count = state.OutputIds.Count;
            if (count <= from) continue;
            (landed ??= []).Add(new LandedTokens(entry.Item.Key, from, Since(state.OutputIds, from, count),
                state.Request.Logprobs is null ? null : Since(state.OutputLogprobs, from, count)));
            _streamed[entry.Item.Key] = count;
        }
        return landed is null ? null : new TokensLanded(landed);
    }

    /// <summary>Items [from, count) by index: a step's new tokens without walking the ones before them.</summary>
    private static T[] Since<T>(IReadOnlyList<T> items, int from, int count)
    {
        var since = new T[count - from];
        for (var i = from; i < count; i++) since[i - from] = items[i];
        return since;
    }

    public GpuBatchIndex[] Active { get; set; } = [];
    public int CursorPosition { get; set; }

    /// <summary>When the block opened (a Stopwatch timestamp).</summary>
    public long StartedAt { get; init; }

    /// <summary>Where the CPU tier's large buffers had come from before the block's batches opened (its own share is logged with it).</summary>
    public Runtime.Tiers.HostBufferCounts? HostBuffersAtStart { get; init; }

    /// <summary>Tokens the block's sequences generated in it (those of dropped sequences not counted), and the seconds since it opened.</summary>
    public (int Tokens, double Seconds, double TokensPerSecond) Measured()
    {
        var tokens = Sequences.Sum(e => e.State is { } s ? s.OutputIds.Count - (e.Item.Resume?.OutputIds.Count ?? 0) : 0);
        var seconds = System.Diagnostics.Stopwatch.GetElapsedTime(StartedAt).TotalSeconds;
        return (tokens, seconds, seconds > 0 ? tokens / seconds : 0);
    }

    /// <summary>
    /// Tokens the block's sequences asked of it (what each had left to generate, within <paramref name="upTo"/>, the
    /// generation length its policy was planned for): a block runs until its longest sequence ends, so a block of
    /// mixed lengths yields fewer tokens than the full block its prediction counts.
    /// </summary>
    public int Asked(int upTo) =>
        Sequences.Sum(e => e.State is { } s ? Math.Clamp(s.Request.MaxTokens - (e.Item.Resume?.OutputIds.Count ?? 0), 0, upTo) : 0);

    /// <summary>
    /// The block's entries for <paramref name="items"/>: each request's generation state (a requeued one restored to its
    /// checkpoint), or the line of its error when the request is not valid for the model.
    /// </summary>
    public static List<BlockEntry> Entries(IEnumerable<(WorkItem Item, IActorRef ReplyTo)> items, CompletionFactory factory)
    {
        var entries = new List<BlockEntry>();
        foreach (var (item, replyTo) in items)
        {
            try
            {
                var state = factory.Create(item.Request, item.Seed);
                if (item.Resume is { } resume)
                {
                    state.Restore(resume.OutputIds, resume.OutputLogprobs);
                    state.PromptLogprobs = resume.PromptLogprobs;
                }
                entries.Add(new BlockEntry(item, replyTo, state, null));
            }
            catch (RequestValidationException ex)
            {
                entries.Add(new BlockEntry(item, replyTo, null, CompletionJson.ErrorLine(item.Id, 0, ex.Param, ex.Message)));
            }
        }
        return entries;
    }

    /// <summary>Each sequence's result line (its error, when it failed or the block did), with whom to answer.</summary>
    public List<(IActorRef ReplyTo, FinishedItem Item)> Results(CompletionFactory factory, string? error)
    {
        // A dropped sequence is requeued, never answered with its block.
        if (_dropped.Count > 0) throw new InvalidOperationException($"block {Id}: {_dropped.Count} dropped sequences were not taken out of the block");
        var results = new List<(IActorRef ReplyTo, FinishedItem Item)>(Sequences.Count);
        foreach (var (item, replyTo, state, itemError) in Sequences)
        {
            var line = itemError
                ?? (error is not null || state is null || !state.IsFinished
                    ? CompletionJson.ErrorLine(item.Id, 0, "", $"generation failed: {error ?? "the sequence did not finish"}")
                    : CompletionJson.ToJsonLine(factory.Result(state, item.Id)));
            results.Add((replyTo, new FinishedItem(item.Key, line)));
        }
        return results;
    }

    /// <summary>Sequences still generating in the block.</summary>
    public int Running => Work.Where(w => w is not null).Sum(w => w!.Sequences.Count(s => !s.IsFinished));

    public (LayerIndex Layer, GpuBatchIndex Batch) Cursor =>
        (new LayerIndex(CursorPosition / Active.Length), Active[CursorPosition % Active.Length]);

    // The sequences of batches dropped and not yet taken out of the block's entries (see TakeDropped).
    private readonly List<SequenceState> _dropped = [];

    /// <summary>
    /// Takes GPU batch <paramref name="b"/> out of the block, freeing its cache and hidden state at once. Its sequences
    /// stay among the block's entries until <see cref="TakeDropped"/>: what a fall waits for is the memory, not this
    /// bookkeeping. False when it was gone already.
    /// </summary>
    public bool Drop(int b)
    {
        if (Work[b] is not { } work) return false;
        var sequences = work.Sequences;
        Hidden[b]?.Dispose();
        Hidden[b] = null;
        Tokens[b]?.Dispose();
        Tokens[b] = null;
        work.Dispose();
        Work[b] = null;
        _dropped.AddRange(sequences);
        return true;
    }

    /// <summary>
    /// The entries of the unfinished sequences of the batches dropped since the last call, taken out of the block (to be
    /// requeued); the finished ones stay and keep their results.
    /// </summary>
    public List<BlockEntry> TakeDropped()
    {
        var requeued = new List<BlockEntry>();
        if (_dropped.Count == 0) return requeued;
        // One pass over the block (no scan of the dropped sequences per entry).
        var dropped = new HashSet<object>(_dropped, ReferenceEqualityComparer.Instance);
        _dropped.Clear();
        Sequences.RemoveAll(entry =>
        {
            if (entry.State is null || entry.State.IsFinished || !dropped.Contains(entry.State)) return false;
            requeued.Add(entry);
            return true;
        });
        return requeued;
    }

    public void Dispose()
    {
        foreach (var h in Hidden) h?.Dispose();
        foreach (var t in Tokens) t?.Dispose();
        foreach (var w in Work) w?.Dispose();
    }
}
