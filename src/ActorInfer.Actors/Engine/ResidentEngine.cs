using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Layers;
using static TorchSharp.torch;

namespace ActorInfer.Actors.Engine;

/// <summary>
/// Every weight and the whole cache on the compute device: the arithmetic of <see cref="BatchGenerator"/>
/// split into per-(layer, batch) steps, so its output is the reference path's token for token.
/// </summary>
/// <param name="tokenFence">
/// Marks when chosen tokens have reached the host (see <see cref="IInferenceEngine.BeginChooseTokens"/>); null: they
/// are appended before <see cref="BeginChooseTokens"/> returns.
/// </param>
public sealed class ResidentEngine(ResidentModel model, Func<IReadOnlyList<int>, string> decode, Func<IReadyFence>? tokenFence = null) : IInferenceEngine
{
    public ModelConfig Config => model.Config;

    public IGpuBatch Open(IReadOnlyList<SequenceState> sequences)
    {
        var c = model.Config;
        var layout = new BatchLayout(sequences.Select(s => s.PromptIds.Count + s.OutputIds.Count).ToArray());
        var remaining = sequences.Max(s => s.Request.MaxTokens - s.OutputIds.Count);
        var capacity = layout.PaddedLength + remaining;
        var kv = new List<LayerKv>(c.NumHiddenLayers);
        for (var i = 0; i < c.NumHiddenLayers; i++)
            kv.Add(LayerKv.Allocate(layout.BatchSize, c.NumKeyValueHeads, capacity, c.HeadDim, model.DType, model.Device));
        return new Batch(sequences, layout, kv);
    }

    public Tensor Embed(IGpuBatch batch, TokenStep step)
    {
        var b = (Batch)batch;
        using var scope = NewDisposeScope();
        Tensor hidden;
        if (step.IsPrefill)
        {
            var ids = b.Layout.PadPrompts(b.Sequences.Select(BatchGenerator.Context).ToArray(), model.Config.PadTokenId, model.Device);
            b.Positions = b.Layout.PrefillPositionIds(model.Device, model.Architecture.PositionOffset).MoveToOuterDisposeScope();
            hidden = model.Architecture.Embed(model.Input, ids, b.Positions);
            b.Mask = b.Layout.PrefillMask(model.Device).MoveToOuterDisposeScope();
        }
        else
        {
            var last = b.Sequences.Select(s => (long)s.OutputIds[^1]).ToArray();
            var ids = tensor(last, [b.Layout.BatchSize, 1], dtype: ScalarType.Int64).to(model.Device);
            var cacheIndex = CacheIndex(b, step);
            b.Positions = b.Layout.DecodePositionIds(cacheIndex, model.Config.MaxPositionEmbeddings, model.Device, model.Architecture.PositionOffset)
                .MoveToOuterDisposeScope();
            hidden = model.Architecture.Embed(model.Input, ids, b.Positions);
            b.Mask = b.Layout.DecodeMask(cacheIndex, model.Device).MoveToOuterDisposeScope();
        }
        return hidden.MoveToOuterDisposeScope();
    }

    public Tensor RunLayer(LayerIndex layer, IGpuBatch batch, Tensor hidden, TokenStep step)
    {
        var b = (Batch)batch;
        using var scope = NewDisposeScope();
        var next = model.Architecture.DecoderLayer(hidden, model.Layers[layer.Value], b.Kv[layer.Value], CacheIndex(b, step), b.Mask!, b.Positions);
        return next.MoveToOuterDisposeScope();
    }

    public void ChooseTokens(IGpuBatch batch, Tensor hidden, TokenStep step)
    {
        using var tokens = Launch((Batch)batch, hidden, step, fence: null);
        tokens.Complete();
    }

    public PendingTokens BeginChooseTokens(IGpuBatch batch, Tensor hidden, TokenStep step) => Launch((Batch)batch, hidden, step, tokenFence);

    private PendingTokens Launch(Batch b, Tensor hidden, TokenStep step, Func<IReadyFence>? fence)
    {
        using var scope = NewDisposeScope();
        if (step.IsPrefill)
        {
            var wantsPrompt = b.Sequences.Any(s => s.Request.Echo && s.Request.Logprobs is not null && s.PromptLogprobs is null);
            var logits = wantsPrompt
                ? model.Architecture.Logits(hidden, model.Output)
                : model.Architecture.Logits(hidden.narrow(1, b.Layout.PaddedLength - 1, 1), model.Output);
            if (wantsPrompt) PromptLogprobs.Fill(logits, b.Sequences, b.Layout);
            return TokenChooser.Launch(logits.select(1, logits.size(1) - 1), b.Sequences, decode, fence);
        }
        var last = model.Architecture.Logits(hidden, model.Output);
        return TokenChooser.Launch(last.select(1, 0), b.Sequences, decode, fence);
    }

    /// <summary>Prefill writes from index 0; decoding step k writes the token at padded length + k - 1.</summary>
    private static int CacheIndex(Batch b, TokenStep step) => step.IsPrefill ? 0 : b.Layout.PaddedLength + step.Value - 1;

    public void Dispose() => model.Dispose();

    private sealed class Batch(IReadOnlyList<SequenceState> sequences, BatchLayout layout, List<LayerKv> kv) : IGpuBatch
    {
        private Tensor? _mask;
        private Tensor? _positions;

        public IReadOnlyList<SequenceState> Sequences { get; } = sequences;
        public BatchLayout Layout { get; } = layout;
        public List<LayerKv> Kv { get; } = kv;
        public bool AllFinished => Sequences.All(s => s.IsFinished);
        public bool Disposed { get; private set; }

        /// <summary>The mask of the current step, shared by every layer of it.</summary>
        public Tensor? Mask
        {
            get => _mask;
            set
            {
                _mask?.Dispose();
                _mask = value;
            }
        }

        /// <summary>The positions of the current step's tokens, shared by every layer of it (rotary embeddings turn by them).</summary>
        public Tensor? Positions
        {
            get => _positions;
            set
            {
                _positions?.Dispose();
                _positions = value;
            }
        }

        public void Dispose()
        {
            Disposed = true;
            _mask?.Dispose();
            _positions?.Dispose();
            foreach (var k in Kv) k.Dispose();
        }
    }
}
