namespace ActorInfer.Planning;

/// <summary>
/// The cost model: a pure function from a model, a workload, a policy and a machine to predicted time and memory. A
/// policy's weights are priced as its fractions place them (<see cref="WeightPlacement"/>), not at the fractions.
/// </summary>
public static class CostModel
{
    public static CostEstimate Evaluate(ModelSpec model, Workload workload, Policy policy, HardwareProfile hardware)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(workload);
        ArgumentNullException.ThrowIfNull(policy);
        hardware.Validate();
        var realized = model.RealizeWeights(policy.Weights, policy.SpreadWeights);
        var terms = CostTerms.Build(model, workload, PolicyShape.Of(policy), hardware, realized);
        return Evaluate(model, workload, policy, terms, realized, LinearExpression.SharesOf(policy));
    }

    /// <param name="terms">Built with <paramref name="realized"/>, the policy's weights as placed.</param>
    internal static CostEstimate Evaluate(ModelSpec model, Workload workload, Policy policy, CostTerms terms, RealizedWeights realized,
        IReadOnlyList<double> shares)
    {
        // The shares with each layer's own cache fractions (the runtime places whole (layer, batch) caches).
        var layerShares = CachePairs.PerLayer(model.NumLayers, policy.NumGpuBatches, policy.Cache)
            .Select(cache => (IReadOnlyList<double>)[shares[0], shares[1], shares[2], cache.Gpu, cache.Cpu, cache.Disk, shares[6], shares[7], shares[8]])
            .ToArray();
        return new CostEstimate
        {
            Policy = policy,
            RealizedWeights = realized,
            Prefill = Phase(terms.Prefill, Planning.Phase.Prefill, 1, model.NumLayers, shares, layerShares),
            Decode = Phase(terms.Decode, Planning.Phase.Decode, workload.DecodeSteps, model.NumLayers, shares, layerShares),
            PrefillMemory = Memory(terms.PrefillMemory, shares),
            DecodeMemory = Memory(terms.DecodeMemory, shares),
            GeneratedTokens = policy.BlockSize * workload.GenerationLength,
            PrefillGpuParts = Parts(terms.PrefillMemory, shares),
            DecodeGpuParts = Parts(terms.DecodeMemory, shares),
        };
    }

    private static PhaseEstimate Phase(PhaseTimeTerms terms, Phase phase, int repetitions, int layers, IReadOnlyList<double> shares,
        IReadOnlyList<IReadOnlyList<double>> layerShares) => new()
    {
        Phase = phase,
        CpuToGpuSeconds = terms.CpuToGpu.Evaluate(shares),
        GpuToCpuSeconds = terms.GpuToCpu.Evaluate(shares),
        DiskToCpuSeconds = terms.DiskToCpu.Evaluate(shares),
        CpuToDiskSeconds = terms.CpuToDisk.Evaluate(shares),
        GpuComputeSeconds = terms.GpuCompute.Evaluate(shares),
        CpuComputeSeconds = terms.CpuCompute.Evaluate(shares),
        PerLayerSeconds = layerShares.Select(s => LayerSeconds(terms, s)).ToArray(),
        Repetitions = repetitions,
        Layers = layers,
    };

    /// <summary>One layer's time: the busiest of the three overlapped streams.</summary>
    private static double LayerSeconds(PhaseTimeTerms terms, IReadOnlyList<double> s) =>
        Math.Max(terms.LoadStream.Evaluate(s), Math.Max(terms.StoreStream.Evaluate(s), terms.ComputeStream.Evaluate(s)));

    private static IReadOnlyList<MemoryPartBytes> Parts(PhaseMemoryTerms terms, IReadOnlyList<double> shares) =>
        terms.GpuParts.Select(part => new MemoryPartBytes(part.Name, part.Bytes.Evaluate(shares), part.Home)).ToArray();

    private static TierBytes Memory(PhaseMemoryTerms terms, IReadOnlyList<double> shares) =>
        new(terms.Gpu.Evaluate(shares), terms.Cpu.Evaluate(shares), terms.Disk.Evaluate(shares));
}
