using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using BlockSession = ActorInfer.Runtime.Schedule.BlockSession;
using OffloadEngine = ActorInfer.Runtime.Schedule.OffloadEngine;
using RuntimeStep = ActorInfer.Runtime.Schedule.TokenStep;
using static TorchSharp.torch;

namespace ActorInfer.Actors.Engine;

/// <summary>
/// The offloading runtime behind the actors: the scheduler's calls (embed each batch, each decoder layer over each
/// batch, choose tokens for each batch) are the runtime's schedule positions, run in the order the runtime
/// prefetches for (a call out of that order is an error, not a silent slowdown). Hidden states stay in the homes
/// the policy gives them (GPU, CPU or disk), so the tensors this engine hands to the actors are empty tokens.
/// </summary>
public sealed class OffloadedEngine(OffloadEngine runtime, Func<IReadOnlyList<int>, string> decode) : IInferenceEngine
{
    private readonly List<Batch> _pending = [];
    private Session? _session;

    public OptConfig Config => runtime.Config;

    public OffloadEngine Runtime => runtime;

    private long _tokens;

    /// <summary>Tokens chosen so far, over every block (for run timelines).</summary>
    public long TokensGenerated => Interlocked.Read(ref _tokens);

    /// <summary>Called on the tensor thread when a step of the running block has chosen its tokens (0 = prefill).</summary>
    public Action<int>? StepDone { get; set; }

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
            session.Block.Begin(new RuntimeStep(step.Value), active);
        }
        session.Block.Run(0, b.Index);
        return empty(0);
    }

    public Tensor RunLayer(LayerIndex layer, IGpuBatch batch, Tensor hidden, TokenStep step)
    {
        var b = (Batch)batch;
        SessionFor(b).Block.Run(layer.Value + 1, b.Index);
        return empty(0);
    }

    public void ChooseTokens(IGpuBatch batch, Tensor hidden, TokenStep step)
    {
        var b = (Batch)batch;
        var session = SessionFor(b);
        var before = b.Sequences.Sum(s => s.OutputIds.Count);
        session.Block.Run(session.Block.ScheduleLayers - 1, b.Index);
        Interlocked.Add(ref _tokens, b.Sequences.Sum(s => s.OutputIds.Count) - before);
        if (!session.Block.InStep) StepDone?.Invoke(step.Value);
    }

    /// <summary>The block a batch belongs to: the batches opened together since the last block form the next one.</summary>
    private Session SessionFor(Batch b)
    {
        if (b.Session is not null) return b.Session;
        if (!_pending.Contains(b)) throw new InvalidOperationException("this batch was not opened on this engine or was disposed");
        var batches = _pending.ToArray();
        _pending.Clear();
        var block = runtime.OpenBlock(batches.SelectMany(x => x.Sequences).ToArray(), decode, gpuBatchSize: batches[0].Sequences.Count);
        var session = new Session(block, batches);
        for (var i = 0; i < batches.Length; i++)
        {
            batches[i].Session = session;
            batches[i].Index = i;
            if (!block.Sequences(i).SequenceEqual(batches[i].Sequences))
                throw new InvalidOperationException("the block's GPU batch size differs from the runtime policy's");
        }
        _session = session;
        return session;
    }

    /// <summary>Frees the running block, if any; the runtime belongs to whoever created it.</summary>
    public void Dispose()
    {
        _session?.Block.Dispose();
        _session = null;
    }

    private sealed class Session(BlockSession block, Batch[] batches)
    {
        public BlockSession Block { get; } = block;
        public Batch[] Batches { get; } = batches;
        public int Open { get; set; } = batches.Length;
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
            if (Session.Open > 1 && !Session.Block.InStep) Session.Block.Drop(Index);
            if (--Session.Open == 0)
            {
                Session.Block.Dispose();
                if (ReferenceEquals(engine._session, Session)) engine._session = null;
            }
            Session = null;
        }
    }
}
