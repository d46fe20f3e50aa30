using ActorInfer.Model.Generation;
using ActorInfer.Model.Layers;

namespace ActorInfer.Runtime.Schedule;

/// <summary>
/// Everything one GPU batch of a block owns: its sequences, its own left-padded layout, its KV cache per decoder
/// layer and its hidden state between layers. Kept separate per batch so that a batch can later be dropped from a
/// running block (freeing exactly what it holds) without touching the others.
/// </summary>
internal sealed class GpuBatch(GpuBatchIndex index, IReadOnlyList<SequenceState> sequences, BatchLayout layout, int capacity) : IDisposable
{
    public GpuBatchIndex Index => index;
    public IReadOnlyList<SequenceState> Sequences => sequences;
    public BatchLayout Layout => layout;
    public int Capacity => capacity;
    public List<KvHome> Cache { get; } = [];
    public HiddenHome? Hidden { get; set; }

    public void Dispose()
    {
        foreach (var kv in Cache) kv.Dispose();
        Cache.Clear();
        Hidden?.Dispose();
        Hidden = null;
    }
}
