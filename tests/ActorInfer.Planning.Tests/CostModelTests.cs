using static ActorInfer.Planning.Tests.TestData;

namespace ActorInfer.Planning.Tests;

/// <summary>
/// Hand-computed cases on the tiny model: hidden h = 8, FFN f = 32, 2 layers, 2 bytes per element, prompt s = 4,
/// generation n = 4 (mean decoding context 6, 3 decoding steps), GPU batch b = 2 in one GPU batch (block B = 2).
/// Layer weights: 4h²+4h + 2hf+f+h + 4h = 256+32+512+32+8+32 = 872 parameters = 1744 bytes.
/// </summary>
public class CostModelTests
{
    private static readonly Workload Work = new(promptLength: 4, generationLength: 4);
    private const double LayerWeightBytes = 1744;
    private const double Tolerance = 1e-9;

    private static CostEstimate Evaluate(Policy policy) => CostModel.Evaluate(TinyModel, Work, policy, RoundProfile);

    [Fact]
    public void Layer_weight_bytes_are_counted_by_hand() => Assert.Equal(LayerWeightBytes, TinyModel.LayerWeightBytes);

    [Fact]
    public void All_on_gpu_moves_nothing_computes_by_the_flop_rates_and_attends_in_decoding_at_the_memory_bandwidth()
    {
        var estimate = Evaluate(Place(Gpu, Gpu, Gpu));
        foreach (var phase in new[] { estimate.Prefill, estimate.Decode })
        {
            Assert.Equal(0, phase.CpuToGpuSeconds);
            Assert.Equal(0, phase.GpuToCpuSeconds);
            Assert.Equal(0, phase.DiskToCpuSeconds);
            Assert.Equal(0, phase.CpuToDiskSeconds);
            Assert.Equal(0, phase.CpuComputeSeconds);
        }
        // Prefill: matmul 2·(4h²+2hf) = 1536 FLOP per token x B·s = 8 tokens = 12288 FLOP at 1e6;
        // attention 4·B·s²·h = 4·2·16·8 = 1024 FLOP at 1e6.
        Assert.Equal((12288 + 1024) / 1e6, estimate.Prefill.GpuComputeSeconds, Tolerance);
        // Decoding: matmul 1536 x B = 3072 FLOP at 1e5; attention reads keys and values of the mean context, 2·2 bytes·h·6·B
        // = 384 bytes at 1e12 (all cache on the GPU).
        Assert.Equal(3072 / 1e5 + 384 / 1e12, estimate.Decode.GpuComputeSeconds, Tolerance);
        Assert.Equal("compute", estimate.Decode.Bottleneck);
        Assert.Equal(estimate.Prefill.LayerSeconds * 2 + estimate.Decode.LayerSeconds * 2 * 3, estimate.TotalSeconds, Tolerance);
        Assert.Equal(2 * 4 / estimate.TotalSeconds, estimate.ThroughputTokensPerSecond, Tolerance);
    }

    [Fact]
    public void Weights_on_cpu_cost_one_layer_per_phase_over_the_cpu_to_gpu_link()
    {
        var estimate = Evaluate(Place(Cpu, Gpu, Gpu));
        Assert.Equal(LayerWeightBytes / 1000, estimate.Prefill.CpuToGpuSeconds, Tolerance);
        Assert.Equal(LayerWeightBytes / 1000, estimate.Decode.CpuToGpuSeconds, Tolerance);
        Assert.Equal(0, estimate.Prefill.DiskToCpuSeconds);
        Assert.Equal(0, estimate.Prefill.GpuToCpuSeconds);
        Assert.Equal("load", estimate.Prefill.Bottleneck);
    }

    [Fact]
    public void Weights_on_disk_pass_through_the_cpu_so_both_links_add_on_the_load_stream()
    {
        var estimate = Evaluate(Place(Disk, Gpu, Gpu));
        Assert.Equal(LayerWeightBytes / 100, estimate.Prefill.DiskToCpuSeconds, Tolerance);
        Assert.Equal(LayerWeightBytes / 1000, estimate.Prefill.CpuToGpuSeconds, Tolerance);
        Assert.Equal(LayerWeightBytes / 100 + LayerWeightBytes / 1000, estimate.Prefill.LoadStreamSeconds, Tolerance);
        Assert.Equal(estimate.Prefill.LoadStreamSeconds, estimate.Prefill.LayerSeconds, Tolerance);
    }

    [Fact]
    public void Cache_on_cpu_is_stored_in_prefill_and_attended_on_the_cpu_in_decoding()
    {
        var estimate = Evaluate(Place(Gpu, Cpu, Gpu));
        // Prefill stores K and V of the prompt: 2·2 bytes·h·s·B = 256 bytes at the cache rate 250.
        Assert.Equal(256 / 250.0, estimate.Prefill.GpuToCpuSeconds, Tolerance);
        // Decoding sends the query and the new K, V down (2·8·2 + 2·2·8·2 = 96 bytes at 250) and the output up (32 bytes at 500).
        Assert.Equal(96 / 250.0, estimate.Decode.GpuToCpuSeconds, Tolerance);
        Assert.Equal(32 / 500.0, estimate.Decode.CpuToGpuSeconds, Tolerance);
        // Attention 4·B·6·h = 384 FLOP on the CPU at 1e3; the GPU does only the matmuls.
        Assert.Equal(384 / 1e3, estimate.Decode.CpuComputeSeconds, Tolerance);
        Assert.Equal(3072 / 1e5, estimate.Decode.GpuComputeSeconds, Tolerance);
    }

    [Fact]
    public void Cpu_attention_adds_to_the_gpu_compute_and_only_the_copies_overlap_the_sum()
    {
        // Weights on the CPU: the load stream is the layer, 1744 bytes at 1000, plus the attention output 32 bytes at 500.
        // The GPU's matmuls (3072 FLOP) take 1 s at 3072 FLOP/s, CPU attention (384 FLOP) 1.2 s at 320 FLOP/s: each
        // alone is shorter than the load stream, together they are longer, because the runtime's host thread runs them
        // one after the other.
        var profile = RoundProfile with { GpuMatmulDecodeFlops = 3072, CpuAttentionFlops = 320 };
        var estimate = CostModel.Evaluate(TinyModel, Work, Place(Cpu, Cpu, Gpu), profile).Decode;
        Assert.Equal(1744 / 1000.0 + 32 / 500.0, estimate.LoadStreamSeconds, Tolerance);
        Assert.Equal(96 / 250.0, estimate.StoreStreamSeconds, Tolerance);
        Assert.Equal(1.0, estimate.GpuComputeSeconds, Tolerance);
        Assert.Equal(1.2, estimate.CpuComputeSeconds, Tolerance);
        Assert.Equal(2.2, estimate.ComputeStreamSeconds, Tolerance);
        Assert.Equal(2.2, estimate.LayerSeconds, Tolerance);
        Assert.Equal("compute", estimate.Bottleneck);

        // With a faster CPU the sum (1.0 + 0.384 s) falls under the copies, which then set the layer time.
        var faster = CostModel.Evaluate(TinyModel, Work, Place(Cpu, Cpu, Gpu), profile with { CpuAttentionFlops = 1000 }).Decode;
        Assert.Equal(1.384, faster.ComputeStreamSeconds, Tolerance);
        Assert.Equal(faster.LoadStreamSeconds, faster.LayerSeconds, Tolerance);
        Assert.Equal("load", faster.Bottleneck);
    }

    [Fact]
    public void Cache_on_cpu_with_gpu_attention_brings_the_whole_cache_up_each_step()
    {
        var estimate = Evaluate(Place(Gpu, Cpu, Gpu, cpuAttention: false));
        // Mean cache read: 2·2·h·6·B = 384 bytes at 500; new K, V 64 bytes down at 250.
        Assert.Equal(384 / 500.0, estimate.Decode.CpuToGpuSeconds, Tolerance);
        Assert.Equal(64 / 250.0, estimate.Decode.GpuToCpuSeconds, Tolerance);
        Assert.Equal(0, estimate.Decode.CpuComputeSeconds);
    }

    [Fact]
    public void Cache_on_disk_is_written_and_read_over_the_disk_links()
    {
        var estimate = Evaluate(Place(Gpu, Disk, Gpu));
        Assert.Equal(256 / 20.0, estimate.Prefill.CpuToDiskSeconds, Tolerance);
        Assert.Equal(384 / 50.0, estimate.Decode.DiskToCpuSeconds, Tolerance);
        Assert.Equal(64 / 20.0, estimate.Decode.CpuToDiskSeconds, Tolerance);
    }

    [Fact]
    public void Activations_on_cpu_and_disk_move_the_hidden_state_in_and_out()
    {
        var onCpu = Evaluate(Place(Gpu, Gpu, Cpu));
        // Prompt hidden: 2 bytes·h·s·B = 128 bytes each way at 1000.
        Assert.Equal(128 / 1000.0, onCpu.Prefill.CpuToGpuSeconds, Tolerance);
        Assert.Equal(128 / 1000.0, onCpu.Prefill.GpuToCpuSeconds, Tolerance);
        Assert.Equal(32 / 1000.0, onCpu.Decode.CpuToGpuSeconds, Tolerance);
        var onDisk = Evaluate(Place(Gpu, Gpu, Disk));
        Assert.Equal(128 / 100.0, onDisk.Prefill.DiskToCpuSeconds, Tolerance);
        Assert.Equal(128 / 100.0, onDisk.Prefill.CpuToDiskSeconds, Tolerance);
    }

    [Fact]
    public void Memory_all_on_gpu_is_home_plus_one_batch_scratch()
    {
        var estimate = Evaluate(Place(Gpu, Gpu, Gpu));
        // The layers, the embeddings and the final LayerNorm, and the output layer's own copy of the tied token
        // embeddings (as FlexGen's OutputEmbed and the runtime hold it): 100 x h more.
        var weights = TinyModel.PlacedWeightBytes;
        Assert.Equal(2 * LayerWeightBytes + (100 * 8 + 12 * 8 + 16) * 2, TinyModel.TotalWeightBytes);
        Assert.Equal(TinyModel.TotalWeightBytes + 100 * 8 * 2, weights);
        const double cache = 2 * 2 * 8 * 8 * 2 * 2; // K+V, 2 bytes, h, s+n, B, layers
        // Prefill computation of one batch, b = 2, s = 4: 2·b·s·max(attention h + 3h + 2h, MLP 2h + f)
        // = 16·max(48, 48) = 768 (the fused kernel holds no scores).
        Assert.Equal(weights + cache + 128 + 768, estimate.PrefillMemory.Gpu, Tolerance);
        // Decoding: 2·b·max(48 + 2·heads·(s+n), 48) = 4·max(48 + 32, 48) = 320 (scores and their softmax).
        Assert.Equal(weights + cache + 32 + 320, estimate.DecodeMemory.Gpu, Tolerance);
        Assert.Equal(0, estimate.PeakMemory.Cpu);
        Assert.Equal(0, estimate.PeakMemory.Disk);
    }

    [Fact]
    public void Memory_with_weights_on_disk_stages_two_layers_in_cpu_and_gpu()
    {
        var estimate = Evaluate(Place(Disk, Gpu, Gpu));
        Assert.Equal(TinyModel.PlacedWeightBytes, estimate.PeakMemory.Disk, Tolerance);
        Assert.Equal(2 * LayerWeightBytes, estimate.PeakMemory.Cpu, Tolerance);
        var allGpu = Evaluate(Place(Gpu, Gpu, Gpu));
        Assert.Equal(allGpu.PeakMemory.Gpu - TinyModel.PlacedWeightBytes + 2 * LayerWeightBytes, estimate.PeakMemory.Gpu, Tolerance);
    }

    [Fact]
    public void More_gpu_batches_share_one_weight_load()
    {
        var one = Evaluate(Place(Cpu, Gpu, Gpu, batch: 2, count: 1));
        var four = Evaluate(Place(Cpu, Gpu, Gpu, batch: 2, count: 4));
        Assert.Equal(one.Prefill.CpuToGpuSeconds, four.Prefill.CpuToGpuSeconds, Tolerance);
        Assert.Equal(4 * one.Decode.GpuComputeSeconds, four.Decode.GpuComputeSeconds, Tolerance);
    }

    [Fact]
    public void Compressed_weights_move_and_store_fewer_bytes()
    {
        var plain = Evaluate(Place(Cpu, Gpu, Gpu));
        var compressed = CostModel.Evaluate(TinyModel, Work, Place(Cpu, Gpu, Gpu) with { CompressWeights = true }, RoundProfile);
        Assert.Equal(plain.Prefill.CpuToGpuSeconds * 0.28125, compressed.Prefill.CpuToGpuSeconds, Tolerance);
        Assert.Equal(plain.PeakMemory.Cpu * 0.28125, compressed.PeakMemory.Cpu, Tolerance);
    }
}

public class CachePairsTests
{
    [Fact]
    public void A_cache_share_is_whole_layers_in_layer_order()
    {
        // 48 layers x 4 batches, 21% on the GPU: 40 pairs, the first 10 layers' whole caches.
        var layers = CachePairs.PerLayer(48, 4, new TierFractions(0.21, 0.79, 0));
        Assert.All(layers.Take(10), f => Assert.Equal(TierFractions.AllGpu, f));
        Assert.All(layers.Skip(10), f => Assert.Equal(TierFractions.AllCpu, f));
        // A share that ends inside a layer: 3 layers x 2 batches, half on the GPU, a third on the CPU, the rest on disk.
        var mixed = CachePairs.PerLayer(3, 2, new TierFractions(0.5, 1.0 / 3, 1.0 / 6));
        Assert.Equal(new TierFractions(1, 0, 0), mixed[0]);
        Assert.Equal(new TierFractions(0.5, 0.5, 0), mixed[1]);
        Assert.Equal(new TierFractions(0, 0.5, 0.5), mixed[2]);
    }

    [Fact]
    public void Each_layer_is_timed_with_its_own_cache_placement()
    {
        // Two layers, one GPU batch: half the cache on the GPU is layer 0's whole cache, layer 1's is on the CPU.
        var work = new Workload(promptLength: 4, generationLength: 4);
        var half = CostModel.Evaluate(TinyModel, work, Place(Gpu, new TierFractions(0.5, 0.5, 0), Gpu), RoundProfile);
        var onGpu = CostModel.Evaluate(TinyModel, work, Place(Gpu, Gpu, Gpu), RoundProfile);
        var onCpu = CostModel.Evaluate(TinyModel, work, Place(Gpu, Cpu, Gpu), RoundProfile);
        Assert.Equal([onGpu.Decode.LayerSeconds, onCpu.Decode.LayerSeconds], half.Decode.PerLayerSeconds!);
        Assert.Equal((onGpu.Decode.LayerSeconds + onCpu.Decode.LayerSeconds) * 3, half.Decode.TotalSeconds, 1e-12);
        Assert.Equal(onGpu.Prefill.LayerSeconds + onCpu.Prefill.LayerSeconds, half.Prefill.TotalSeconds, 1e-12);
        // Timing the mean layer instead would take the busiest stream of the averaged shares, which is never more.
        var meanLayer = Math.Max(half.Decode.LoadStreamSeconds, Math.Max(half.Decode.StoreStreamSeconds, half.Decode.ComputeStreamSeconds));
        Assert.True(half.Decode.LayerSeconds >= meanLayer - 1e-15);
    }
}
