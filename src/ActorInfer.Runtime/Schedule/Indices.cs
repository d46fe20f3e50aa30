namespace ActorInfer.Runtime.Schedule;

/// <summary>A layer of the schedule: 0 is the input embedding, 1..L the decoder layers, L+1 the output head.</summary>
public readonly record struct LayerIndex(int Value)
{
    public override string ToString() => $"layer {Value}";
}

/// <summary>A GPU batch within a block.</summary>
public readonly record struct GpuBatchIndex(int Value)
{
    public override string ToString() => $"batch {Value}";
}

/// <summary>A generation step: 0 is the prefill, n the n-th decoding step.</summary>
public readonly record struct TokenStep(int Value)
{
    public static readonly TokenStep Prefill = new(0);
    public bool IsPrefill => Value == 0;

    /// <summary>Where this step's keys go in a batch's cache (each GPU batch has its own padded length).</summary>
    public int CacheIndex(ActorInfer.Model.Layers.BatchLayout layout) => IsPrefill ? 0 : layout.PaddedLength + Value - 1;

    public TokenStep Next() => new(Value + 1);
    public override string ToString() => IsPrefill ? "prefill" : $"decode step {Value}";
}

/// <summary>
/// A position in the zig-zag order of one step: every GPU batch of a layer, then the next layer. Next() and
/// Previous() return null past either end.
/// </summary>
public readonly record struct BlockCursor(LayerIndex Layer, GpuBatchIndex Batch, int LayerCount, int BatchCount)
{
    public static BlockCursor First(int layerCount, int batchCount) => new(new(0), new(0), layerCount, batchCount);

    public BlockCursor? Next()
    {
        if (Batch.Value + 1 < BatchCount) return this with { Batch = new(Batch.Value + 1) };
        if (Layer.Value + 1 < LayerCount) return this with { Layer = new(Layer.Value + 1), Batch = new(0) };
        return null;
    }

    public BlockCursor? Previous()
    {
        if (Batch.Value > 0) return this with { Batch = new(Batch.Value - 1) };
        if (Layer.Value > 0) return this with { Layer = new(Layer.Value - 1), Batch = new(BatchCount - 1) };
        return null;
    }

    public override string ToString() => $"({Layer}, {Batch})";
}
