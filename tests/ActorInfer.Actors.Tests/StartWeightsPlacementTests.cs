using ActorInfer.Actors.Node;
using ActorInfer.Planning;

namespace ActorInfer.Actors.Tests;

/// <summary>Where a node on a GPU loads its weights: on the device only when they fit its budget; else in host memory.</summary>
public sealed class StartWeightsPlacementTests
{
    private const long GiB = 1L << 30;

    [Fact]
    public void Weights_that_fit_the_budget_load_on_the_device_and_others_in_host_memory()
    {
        // OPT-6.7B's 13.4 GB under 40 GiB (0.5 GiB of CUDA context): on the device.
        Assert.Equal(TierFractions.AllGpu, NodeModel.StartWeights(13_400_000_000, 40 * GiB, GiB / 2, 0));
        // OPT-30B's 60 GB under 16 GiB, or on a device of 24 GiB with no budget set: in host memory.
        Assert.Equal(TierFractions.AllCpu, NodeModel.StartWeights(60_000_000_000, 16 * GiB, GiB / 2, 0));
        Assert.Equal(TierFractions.AllCpu, NodeModel.StartWeights(60_000_000_000, 24 * GiB, GiB / 2, 0));
        // A second model counts what the first holds: 13.4 GB beside 60 GB under 72 GiB does not fit.
        Assert.Equal(TierFractions.AllCpu, NodeModel.StartWeights(13_400_000_000, 72 * GiB, GiB / 2, 60_000_000_000));
        Assert.Equal(TierFractions.AllGpu, NodeModel.StartWeights(13_400_000_000, 72 * GiB, GiB / 2, 0));
        // A tenth of the budget stays for the first block: weights of 95% of it do not load there.
        Assert.Equal(TierFractions.AllCpu, NodeModel.StartWeights(95 * GiB / 100 * 10, 10 * GiB, 0, 0));
    }
}
