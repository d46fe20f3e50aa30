namespace ActorInfer.Planning;

/// <summary>Bytes per tier.</summary>
public sealed record TierBytes(double Gpu, double Cpu, double Disk)
{
    public double For(Tier tier) => tier switch
    {
        Tier.Gpu => Gpu,
        Tier.Cpu => Cpu,
        _ => Disk,
    };

    public static TierBytes Max(TierBytes first, TierBytes second) =>
        new(Math.Max(first.Gpu, second.Gpu), Math.Max(first.Cpu, second.Cpu), Math.Max(first.Disk, second.Disk));

    public static TierBytes operator +(TierBytes first, TierBytes second) =>
        new(first.Gpu + second.Gpu, first.Cpu + second.Cpu, first.Disk + second.Disk);

    public static TierBytes operator *(double factor, TierBytes bytes) => new(factor * bytes.Gpu, factor * bytes.Cpu, factor * bytes.Disk);
}

/// <summary>
/// One phase of one layer for the whole block: the seconds each link and processor is busy, and the layer's time,
/// which is the busiest of the three overlapped streams. For decoding these are the mean step's figures.
/// </summary>
public sealed record PhaseEstimate
{
    public required Phase Phase { get; init; }
    public required double CpuToGpuSeconds { get; init; }
    public required double GpuToCpuSeconds { get; init; }
    public required double DiskToCpuSeconds { get; init; }
    public required double CpuToDiskSeconds { get; init; }
    public required double GpuComputeSeconds { get; init; }
    public required double CpuComputeSeconds { get; init; }
    /// <summary>Disk -> CPU -> GPU.</summary>
    public double LoadStreamSeconds => DiskToCpuSeconds + CpuToGpuSeconds;
    /// <summary>GPU -> CPU -> disk.</summary>
    public double StoreStreamSeconds => GpuToCpuSeconds + CpuToDiskSeconds;
    /// <summary>GPU compute plus CPU attention: one host thread runs them one after the other (<see cref="PhaseTimeTerms.ComputeStream"/>).</summary>
    public double ComputeStreamSeconds => GpuComputeSeconds + CpuComputeSeconds;
    /// <summary>The mean layer's time: the busiest stream, each layer timed with its own cache placement.</summary>
    public double LayerSeconds => PerLayerSeconds is { Count: > 0 } each
        ? each.Average()
        : Math.Max(LoadStreamSeconds, Math.Max(StoreStreamSeconds, ComputeStreamSeconds));
    /// <summary>
    /// Each decoder layer's time, the busiest of its three streams with that layer's own cache fractions
    /// (<see cref="CachePairs"/>); the stream figures above are means over the layers. Null: every layer as the mean.
    /// </summary>
    public IReadOnlyList<double>? PerLayerSeconds { get; init; }
    /// <summary>How many times the phase runs each layer: once for prefill, once per decoding step.</summary>
    public required int Repetitions { get; init; }
    public required int Layers { get; init; }
    public double TotalSeconds => LayerSeconds * Layers * Repetitions;

    /// <summary>The stream that sets the mean layer's time: "load", "store" or "compute".</summary>
    public string Bottleneck
    {
        get
        {
            var slowest = Math.Max(LoadStreamSeconds, Math.Max(StoreStreamSeconds, ComputeStreamSeconds));
            return slowest == ComputeStreamSeconds ? "compute" : slowest == LoadStreamSeconds ? "load" : "store";
        }
    }
}

/// <summary>One named part of a tier's peak, in bytes.</summary>
public sealed record MemoryPartBytes(string Name, double Bytes, bool Home = false);

/// <summary>What the cost model predicts for one policy.</summary>
public sealed record CostEstimate
{
    public required Policy Policy { get; init; }
    /// <summary>The weights as the policy's fractions place them, which is what the estimate prices.</summary>
    public required RealizedWeights RealizedWeights { get; init; }
    public required PhaseEstimate Prefill { get; init; }
    public required PhaseEstimate Decode { get; init; }
    public required TierBytes PrefillMemory { get; init; }
    public required TierBytes DecodeMemory { get; init; }
    public required int GeneratedTokens { get; init; }
    /// <summary>The parts of <see cref="PrefillMemory"/>'s GPU figure (<see cref="PhaseMemoryTerms.GpuParts"/>).</summary>
    public IReadOnlyList<MemoryPartBytes> PrefillGpuParts { get; init; } = [];
    public IReadOnlyList<MemoryPartBytes> DecodeGpuParts { get; init; } = [];

    public double PrefillSeconds => Prefill.TotalSeconds;
    public double DecodeSeconds => Decode.TotalSeconds;
    public double TotalSeconds => PrefillSeconds + DecodeSeconds;
    /// <summary>Generated tokens (block size x generation length) per second of prefill plus decoding.</summary>
    public double ThroughputTokensPerSecond => GeneratedTokens / TotalSeconds;
    public TierBytes PeakMemory => TierBytes.Max(PrefillMemory, DecodeMemory);
    /// <summary>The phase whose GPU figure is the GPU peak (the prefill on a tie).</summary>
    public Phase GpuPeakPhase => DecodeMemory.Gpu > PrefillMemory.Gpu ? Phase.Decode : Phase.Prefill;
    public IReadOnlyList<MemoryPartBytes> GpuPeakParts => GpuPeakPhase == Phase.Prefill ? PrefillGpuParts : DecodeGpuParts;
}
