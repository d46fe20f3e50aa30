namespace ActorInfer.Planning;

/// <summary>
/// The GPU peak as the device reports it, predicted from the cost model's: its tensors (what libtorch's caching allocator
/// hands out at the busiest point), the allocator's reserve beyond them, and the CUDA context with the libraries' handles.
/// The homes (weights, cache, hidden states on the GPU) are taken once; the buffers of each (layer, GPU batch) are taken
/// and given back in sizes that change between a layer's attention and its MLP and between phases, and a request that fits
/// no freed block maps more of the segment: the reserve grows with the buffers, not with the homes.
/// </summary>
public static class DevicePeak
{
    /// <summary>
    /// The allocator's reserve beyond the tensors as a share of a phase's buffers (every part but the homes). Measured with
    /// expandable segments on an H100 over five policies (docs/perf/h100-device-peak/): 0.18 to 0.34 of the buffers, from
    /// OPT-6.7B all on the GPU (the reserve 0.7% of the tensors) to OPT-30B with 92% of its weights streamed (16%).
    /// </summary>
    public const double AllocatorReserveShare = 0.30;

    /// <summary>A phase's tensors with the allocator's reserve for its buffers.</summary>
    public static double Reserved(IReadOnlyList<MemoryPartBytes> gpuParts) => Reserved(gpuParts, AllocatorReserveShare);

    /// <summary>A phase's tensors with a reserve of <paramref name="share"/> of its buffers (<see cref="MemoryBudget.GpuBufferReserve"/>).</summary>
    public static double Reserved(IReadOnlyList<MemoryPartBytes> gpuParts, double share)
    {
        double homes = 0, buffers = 0;
        foreach (var part in gpuParts)
        {
            if (part.Home) homes += part.Bytes;
            else buffers += part.Bytes;
        }
        return homes + buffers * (1 + share);
    }

    /// <summary>
    /// The device-reported peak predicted for an estimate beside a CUDA context of <paramref name="contextBytes"/> (0 where
    /// it is not known, as off the GPU machine): the allocator keeps what a phase reserved, so the larger phase's.
    /// </summary>
    public static double Predicted(CostEstimate estimate, long contextBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(contextBytes);
        return contextBytes + Math.Max(Reserved(estimate.PrefillGpuParts), Reserved(estimate.DecodeGpuParts));
    }
}
