using ActorInfer.Model.Layers;
using static TorchSharp.torch;

namespace ActorInfer.Model.Generation;

/// <summary>
/// Generates for one left-padded batch with every weight and the whole KV cache on the model's device.
/// This is the reference path that every offloaded placement must reproduce token for token.
/// </summary>
public static class BatchGenerator
{
    /// <param name="compressCache">Keep the cache 4-bit compressed (<see cref="CompressedLayerKv"/>): the reference for a
    /// runtime that stores it so.</param>
    public static void Run(ResidentModel model, IReadOnlyList<SequenceState> sequences, Func<IReadOnlyList<int>, string> decode,
        bool compressCache = false)
    {
        var c = model.Config;
        var layout = new BatchLayout(sequences.Select(s => s.PromptIds.Count + s.OutputIds.Count).ToArray());
        var remaining = sequences.Max(s => s.Request.MaxTokens - s.OutputIds.Count);
        var capacity = layout.PaddedLength + remaining;
        var kv = new List<LayerKv>(c.NumHiddenLayers);
        try
        {
            for (var i = 0; i < c.NumHiddenLayers; i++)
                kv.Add(compressCache
                    ? CompressedLayerKv.Allocate(layout.BatchSize, c.NumKeyValueHeads, capacity, c.HeadDim, model.DType, model.Device)
                    : LayerKv.Allocate(layout.BatchSize, c.NumKeyValueHeads, capacity, c.HeadDim, model.DType, model.Device));
            Prefill(model, sequences, layout, kv, decode);
            for (var cacheIndex = layout.PaddedLength; sequences.Any(s => !s.IsFinished); cacheIndex++)
                DecodeStep(model, sequences, layout, kv, cacheIndex, decode);
        }
        finally
        {
            foreach (var k in kv) k.Dispose();
        }
    }

    /// <summary>Every token a sequence has so far: prompt, then what it generated before (when resumed).</summary>
    public static IReadOnlyList<int> Context(SequenceState s) => s.OutputIds.Count == 0 ? s.PromptIds : [.. s.PromptIds, .. s.OutputIds];

    private static void Prefill(ResidentModel model, IReadOnlyList<SequenceState> sequences, BatchLayout layout, List<LayerKv> kv,
        Func<IReadOnlyList<int>, string> decode)
    {
        using var scope = NewDisposeScope();
        var ids = layout.PadPrompts(sequences.Select(Context).ToArray(), model.Config.PadTokenId, model.Device);
        var mask = layout.PrefillMask(model.Device);
        var architecture = model.Architecture;
        var positions = layout.PrefillPositionIds(model.Device, architecture.PositionOffset);
        var hidden = architecture.Embed(model.Input, ids, positions);
        for (var l = 0; l < model.Layers.Count; l++)
        {
            var next = architecture.DecoderLayer(hidden, model.Layers[l], kv[l], 0, mask, positions);
            hidden.Dispose();
            hidden = next;
        }
        var wantsPrompt = sequences.Any(s => s.Request.Echo && s.Request.Logprobs is not null && s.PromptLogprobs is null);
        var logits = wantsPrompt
            ? architecture.Logits(hidden, model.Output)
            : architecture.Logits(hidden.narrow(1, layout.PaddedLength - 1, 1), model.Output);
        if (wantsPrompt) PromptLogprobs.Fill(logits, sequences, layout);
        TokenChooser.ChooseAndAppend(logits.select(1, logits.size(1) - 1), sequences, decode);
    }

    private static void DecodeStep(ResidentModel model, IReadOnlyList<SequenceState> sequences, BatchLayout layout, List<LayerKv> kv,
        int cacheIndex, Func<IReadOnlyList<int>, string> decode)
    {
        using var scope = NewDisposeScope();
        var last = sequences.Select(s => (long)s.OutputIds[^1]).ToArray();
        var ids = tensor(last, [layout.BatchSize, 1], dtype: ScalarType.Int64).to(model.Device);
        var mask = layout.DecodeMask(cacheIndex, model.Device);
        var architecture = model.Architecture;
        var positions = layout.DecodePositionIds(cacheIndex, model.Config.MaxPositionEmbeddings, model.Device, architecture.PositionOffset);
        var hidden = architecture.Embed(model.Input, ids, positions);
        for (var l = 0; l < model.Layers.Count; l++)
        {
            var next = architecture.DecoderLayer(hidden, model.Layers[l], kv[l], cacheIndex, mask, positions);
            hidden.Dispose();
            hidden = next;
        }
        var logits = architecture.Logits(hidden, model.Output);
        TokenChooser.ChooseAndAppend(logits.select(1, 0), sequences, decode);
    }
}
