using ActorInfer.Actors.Planner;
using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using ActorInfer.Planning;
using ActorInfer.Runtime.Schedule;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Actors.Tests;

/// <summary>
/// Issue 24's GPU run, planned here: Llama-3.1-70B (141 GB in float16, more than the GPU machine's host memory) with
/// compressed weights under a 40 GiB GPU / 100 GiB CPU budget on the H200's committed profile. The search, corrected to
/// the runtime's whole-tensor placement as `bench --policy auto` does it, finds a policy that fits, with every weight
/// stored compressed (about 40 GB in all), so that no tier ever holds the float16 model.
/// </summary>
public sealed class LlamaSeventyBPlanTests
{
    [Fact]
    public void Llama_3_1_70b_with_compressed_weights_fits_40_gib_of_gpu_and_100_gib_of_cpu()
    {
        var config = ModelConfigs.Resolve("llama-3.1-70b");
        using var source = new DummyWeightSource(config, seed: 0);
        var hardware = HardwareProfiles.Resolve(Path.Combine(TestModels.RepositoryRoot, "hocon", "hardware", "h200-141gb.json"));
        var workload = new Workload(512, 32);
        var spec = ModelSpecMapper.From(config, 2);
        // What RunSetup leaves of --gpu-mem 40GiB: a CUDA context (about 0.5 GiB on an H200; 1 GiB taken here) and the allocator's allowance.
        long gpu = 40L << 30, cpu = 100L << 30;
        var usable = gpu - (1L << 30) - DeviceReserve.AllowanceFor(gpu);
        var found = FittingSearch.Find(spec, workload, hardware, new SearchOptions { CompressWeights = true }, new FittingSearch.Budget(usable, cpu, 1),
            policy => OffloadRuntime.PlanFor(config, source, policy, ScalarType.Float16, deviceIsCpu: false, 512, 32).Total);
        Assert.True(found.Policy.CompressWeights);
        var plan = OffloadRuntime.PlanFor(config, source, found.Policy, ScalarType.Float16, deviceIsCpu: false, 512, 32);
        Assert.True(plan.Total.Device <= usable, $"{plan.Total}");
        Assert.True(plan.Total.Cpu <= cpu, $"{plan.Total}");
        Assert.Equal(0, plan.Total.Disk);
        // 70.6 billion values at 0.5625 bytes: about 39.7 GB of weights over the GPU and the CPU.
        var weights = plan.Weights.Device + plan.Weights.Cpu;
        Assert.InRange(weights, 39.0e9, 40.5e9);
        Assert.True(found.Estimate.ThroughputTokensPerSecond > 10, $"predicted {found.Estimate.ThroughputTokensPerSecond} token/s with {found.Policy}");
        Console.WriteLine($"llama-3.1-70b compressed, 40 GiB / 100 GiB: {found.Policy}; predicted {found.Estimate.ThroughputTokensPerSecond:F1} token/s; placement {plan.Total}");
    }
}
