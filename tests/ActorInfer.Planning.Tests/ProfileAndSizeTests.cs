namespace ActorInfer.Planning.Tests;

public class HardwareProfileTests
{
    [Fact]
    public void The_t4_profile_carries_flexgens_constants()
    {
        var t4 = HardwareProfiles.T4FlexGen;
        Assert.Equal(12.89 * (1L << 30), t4.CpuToGpuBytesPerSecond);
        Assert.Equal(0.97 * (1L << 30), t4.GpuToCpuCacheBytesPerSecond);
        Assert.Equal(0.473 * (1L << 30), t4.DiskToCpuBytesPerSecond);
        Assert.Equal(0.079e12, t4.GpuBatchedMatmulDecodeFlops);
        Assert.Equal(0.0123e12, t4.CpuAttentionFlops);
        // Batch 64 and hidden 4096 or more: no correction; batch 1: 1 - 0.0328·6.
        Assert.Equal(1, t4.CpuAttentionFit!.Factor(64, 12288), 12);
        Assert.Equal(1 - 0.0328 * 6, t4.CpuAttentionFit.Factor(1, 12288), 12);
    }

    [Fact]
    public void A_cpu_attention_fit_recovers_the_rate_and_coefficient_that_made_its_points()
    {
        // Rates made by FlexGen's correction with 100 GFLOP/s at batch 64 and a batch coefficient of 0.05.
        var points = new[] { 8, 16, 24, 32, 48 }.Select(b => (b, 100e9 * (1 - 0.05 * Math.Log2(64.0 / b)))).ToArray();
        var (rate, fit) = CpuAttentionFit.FromRates(points);
        Assert.Equal(100e9, rate, 1e-3);
        Assert.Equal(0.05, fit.Batch, 1e-12);
        Assert.Equal(0, fit.BatchAndHidden);
        Assert.Equal(0, fit.Hidden);
        // The profile then predicts each measured point: batch 24 at 100·(1 − 0.05·log2(64/24)) GFLOP/s.
        var profile = TestData.RoundProfile with { CpuAttentionFlops = rate, CpuAttentionFit = fit };
        Assert.Equal(points[2].Item2, profile.EffectiveCpuAttentionFlops(24, 7168), 1e-3);
    }

    [Fact]
    public void A_cpu_attention_fit_least_squares_by_hand()
    {
        // Batches 16, 32, 64 are 2, 1, 0 octaves below 64; rates 70, 90, 95 (means: 1 octave, 85). Covariance
        // (1·−15 + 0·5 + −1·10) = −25 over variance 2: slope −12.5 per octave, so 85 + 12.5 = 97.5 at batch 64 and
        // a coefficient of 12.5 / 97.5.
        var (rate, fit) = CpuAttentionFit.FromRates([(16, 70), (32, 90), (64, 95)]);
        Assert.Equal(97.5, rate, 1e-9);
        Assert.Equal(12.5 / 97.5, fit.Batch, 1e-12);
        Assert.Equal(0, fit.BatchAndHidden);
        Assert.Equal(0, fit.Hidden);
    }

    [Fact]
    public void A_cpu_attention_rate_that_does_not_fall_with_the_batch_gets_no_correction()
    {
        var (rate, fit) = CpuAttentionFit.FromRates([(8, 60), (16, 50), (48, 40)]);
        Assert.Equal(50, rate, 1e-9);
        Assert.Equal(new CpuAttentionFit(0, 0, 0), fit);
        Assert.Throws<ArgumentException>(() => CpuAttentionFit.FromRates([]));
        Assert.Throws<ArgumentException>(() => CpuAttentionFit.FromRates([(8, 0)]));
        Assert.Throws<ArgumentException>(() => CpuAttentionFit.FromRates([(0, 1e9)]));
    }

    [Fact]
    public void The_shipped_profiles_load()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (!File.Exists(Path.Combine(root.FullName, "ActorInfer.sln")))
            root = root.Parent ?? throw new DirectoryNotFoundException("ActorInfer.sln not found above the test assembly");
        var files = Directory.GetFiles(Path.Combine(root.FullName, "hocon", "hardware"), "*.json");
        Assert.NotEmpty(files);
        foreach (var file in files)
            Assert.Equal(Path.GetFileNameWithoutExtension(file), HardwareProfileJson.Load(file).Name);
    }

    [Fact]
    public void A_profile_round_trips_through_json()
    {
        var text = HardwareProfileJson.Serialize(HardwareProfiles.T4FlexGen);
        Assert.Equal(HardwareProfiles.T4FlexGen, HardwareProfileJson.Parse(text));
        var path = Path.Combine(Path.GetTempPath(), $"profile-{Guid.NewGuid():N}.json");
        try
        {
            HardwareProfileJson.Save(HardwareProfiles.T4FlexGen, path);
            Assert.Equal(HardwareProfiles.T4FlexGen, HardwareProfiles.Resolve(path));
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// An optional compute key: written when set, read back equal, left out of a profile without it, and a negative value
    /// rejected naming the key.
    /// </summary>
    private static void AssertOptionalKeyRoundTrips(HardwareProfile profile, string key, string value)
    {
        var text = HardwareProfileJson.Serialize(profile);
        Assert.Contains($"\"{key}\": {value}", text);
        Assert.Equal(profile, HardwareProfileJson.Parse(text));
        Assert.DoesNotContain(key, HardwareProfileJson.Serialize(HardwareProfiles.T4FlexGen));
        Assert.Contains($"compute.{key}",
            Assert.Throws<InvalidDataException>(() => HardwareProfileJson.Parse(text.Replace($"\"{key}\": {value}", $"\"{key}\": -{value}"))).Message);
    }

    [Fact]
    public void A_gpu_batch_overhead_round_trips_and_adds_its_time_to_every_gpu_batch_of_a_prefill_layer_and_of_a_decoding_layer_by_the_cache_off_the_gpu()
    {
        var profile = HardwareProfiles.T4FlexGen with { GpuBatchOverheadSeconds = 0.002 };
        AssertOptionalKeyRoundTrips(profile, "gpu_batch_overhead_s", "0.002");

        var model = OptModels.Get("opt-1.3b");
        var workload = new Workload(64, 8);
        (CostEstimate Without, CostEstimate With) Both(TierFractions cache)
        {
            var policy = new Policy(4, 3, TierFractions.AllGpu, cache, TierFractions.AllGpu) { CpuAttention = false };
            return (CostModel.Evaluate(model, workload, policy, HardwareProfiles.T4FlexGen), CostModel.Evaluate(model, workload, policy, profile));
        }
        // The cache on the GPU: every prefill batch pays it, no decoding batch does.
        var (without, with) = Both(TierFractions.AllGpu);
        Assert.Equal(without.Prefill.GpuComputeSeconds + 3 * 0.002, with.Prefill.GpuComputeSeconds, 9);
        Assert.Equal(without.Decode.GpuComputeSeconds, with.Decode.GpuComputeSeconds, 9);
        // A quarter of it on the CPU: a decoding batch pays a quarter; all of it: the whole.
        (without, with) = Both(new TierFractions(0.75, 0.25, 0));
        Assert.Equal(without.Decode.GpuComputeSeconds + 0.25 * 3 * 0.002, with.Decode.GpuComputeSeconds, 9);
        (without, with) = Both(TierFractions.AllCpu);
        Assert.Equal(without.Decode.GpuComputeSeconds + 3 * 0.002, with.Decode.GpuComputeSeconds, 9);
    }

    [Fact]
    public void With_the_decode_rate_s_token_count_a_decoding_batch_costs_at_least_the_measured_product_and_grows_only_at_the_prefill_rate()
    {
        var profile = HardwareProfiles.T4FlexGen with { GpuMatmulDecodeTokens = 32 };
        AssertOptionalKeyRoundTrips(profile, "gpu_matmul_decode_tokens", "32");

        var model = OptModels.Get("opt-1.3b");
        var workload = new Workload(64, 8);
        double Matmul(int size, int batches, HardwareProfile hw)
        {
            // The attention's reads at an unbounded bandwidth: the decoding step's GPU compute is its dense products alone.
            var policy = new Policy(size, batches, TierFractions.AllGpu, TierFractions.AllGpu, TierFractions.AllGpu) { CpuAttention = false };
            var bare = hw with { GpuMemoryBytesPerSecond = 1e30 };
            return CostModel.Evaluate(model, workload, policy, bare).Decode.GpuComputeSeconds;
        }
        // FlexGen's model: three times the batch, three times the time.
        Assert.Equal(3 * Matmul(32, 1, HardwareProfiles.T4FlexGen), Matmul(96, 1, HardwareProfiles.T4FlexGen), 9);
        // With the token count: a batch of 8 costs what the measured 32 did; 96 costs the same (memory-bound at the
        // prefill rate's arithmetic); two batches of 32 cost two measured products.
        var measured = Matmul(32, 1, HardwareProfiles.T4FlexGen);
        Assert.Equal(measured, Matmul(32, 1, profile), 9);
        Assert.Equal(measured, Matmul(8, 1, profile), 9);
        Assert.Equal(measured, Matmul(96, 1, profile), 9);
        Assert.Equal(2 * measured, Matmul(32, 2, profile), 9);
        // Past what the prefill rate does in the measured time, the arithmetic governs.
        var large = (int)Math.Ceiling(32 * profile.GpuMatmulPrefillFlops / profile.GpuMatmulDecodeFlops) * 2;
        Assert.True(Matmul(large, 1, profile) > 1.5 * measured);
    }

    /// <summary>
    /// A compressed cache's CPU attention rate round-trips and prices the CPU attention of a compressed cache alone (with the
    /// same batch correction); left out, the uncompressed rate prices both.
    /// </summary>
    [Fact]
    public void A_compressed_cache_s_cpu_attention_rate_prices_compressed_caches_attended_on_the_cpu()
    {
        var profile = HardwareProfiles.T4FlexGen with { CpuAttentionCodesFlops = 0.0246e12 };
        AssertOptionalKeyRoundTrips(profile, "cpu_attention_codes_flops", "24600000000");

        var model = OptModels.Get("opt-1.3b");
        var workload = new Workload(64, 8);
        double CpuSeconds(bool compressed, HardwareProfile hw) => CostModel.Evaluate(model, workload,
            new Policy(8, 2, TierFractions.AllGpu, TierFractions.AllCpu, TierFractions.AllGpu) { CpuAttention = true, CompressCache = compressed }, hw)
            .Decode.CpuComputeSeconds;
        var plain = CpuSeconds(false, HardwareProfiles.T4FlexGen);
        Assert.True(plain > 0);
        Assert.Equal(plain, CpuSeconds(false, profile), 12);
        Assert.Equal(plain, CpuSeconds(true, HardwareProfiles.T4FlexGen), 12);
        Assert.Equal(plain / 2, CpuSeconds(true, profile), 12);
        Assert.Equal(profile.EffectiveCpuAttentionFlops(8, 2048) * 2, profile.EffectiveCpuAttentionFlops(8, 2048, compressedCache: true), 3);
    }

    [Fact]
    public void A_left_out_cache_bandwidth_equals_the_bulk_one()
    {
        var text = HardwareProfileJson.Serialize(HardwareProfiles.T4FlexGen).Replace("\"gpu_to_cpu_cache_bytes_per_s\"", "\"ignored\"");
        var lines = text.Split('\n').Where(l => !l.Contains("\"ignored\"")).ToArray();
        var profile = HardwareProfileJson.Parse(string.Join('\n', lines));
        Assert.Equal(profile.GpuToCpuBytesPerSecond, profile.GpuToCpuCacheBytesPerSecond);
    }

    [Theory]
    [InlineData("\"cpu_to_gpu_bytes_per_s\": 13840532111.36", "\"cpu_to_gpu_bytes_per_s\": -1", "bandwidth.cpu_to_gpu_bytes_per_s")]
    [InlineData("\"gpu_bytes\": 16000000000", "\"gpu_bytes\": 0", "memory.gpu_bytes")]
    [InlineData("\"cpu_attention_flops\": 12300000000", "\"cpu_attention_flops\": \"fast\"", "compute.cpu_attention_flops")]
    [InlineData("\"disk_to_cpu_bytes_per_s\"", "\"disk_to_cpu_bytes_per_sec\"", "bandwidth.disk_to_cpu_bytes_per_sec")]
    [InlineData("\"gpu_matmul_decode_flops\": 4300000000000,", "", "compute.gpu_matmul_decode_flops")]
    [InlineData("\"name\": \"t4-flexgen\"", "\"name\": 4", "name")]
    public void Malformed_profiles_are_rejected_naming_the_key(string find, string replacement, string key)
    {
        var text = HardwareProfileJson.Serialize(HardwareProfiles.T4FlexGen);
        Assert.Contains(find, text);
        var error = Assert.Throws<InvalidDataException>(() => HardwareProfileJson.Parse(text.Replace(find, replacement)));
        Assert.Contains(key, error.Message);
    }

    [Fact]
    public void Broken_json_and_unknown_profiles_get_clear_errors()
    {
        Assert.Contains("not valid JSON", Assert.Throws<InvalidDataException>(() => HardwareProfileJson.Parse("{ name: ")).Message);
        Assert.Contains("unknown hardware profile", Assert.Throws<ArgumentException>(() => HardwareProfiles.Resolve("a100-nowhere")).Message);
    }
}

public class ByteSizeTests
{
    [Theory]
    [InlineData("16GB", 16_000_000_000)]
    [InlineData("16 GB", 16_000_000_000)]
    [InlineData("208gb", 208_000_000_000)]
    [InlineData("0", 0)]
    [InlineData("1.5TB", 1_500_000_000_000)]
    [InlineData("16GiB", 17_179_869_184)]
    [InlineData("512MiB", 536_870_912)]
    [InlineData("2kb", 2_000)]
    [InlineData("1000000", 1_000_000)]
    [InlineData("1e9", 1_000_000_000)]
    public void Sizes_parse_with_decimal_and_binary_units(string text, long bytes) => Assert.Equal(bytes, ByteSize.Parse(text));

    [Theory]
    [InlineData("")]
    [InlineData("-16GB")]
    [InlineData("8G")]
    [InlineData("2k")]
    [InlineData("16 parsecs")]
    [InlineData("GB")]
    [InlineData("1.2.3GB")]
    public void Bad_sizes_are_rejected(string text) =>
        Assert.Throws<FormatException>(() => ByteSize.Parse(text, "--gpu-mem"));
}

public class FractionTests
{
    [Fact]
    public void Fractions_must_be_in_range_and_sum_to_one()
    {
        Assert.Throws<ArgumentException>(() => new TierFractions(0.5, 0.6, 0));
        Assert.Throws<ArgumentException>(() => new TierFractions(-0.1, 0.6, 0.5));
        Assert.Throws<ArgumentException>(() => TierFractions.FromPercent(60, 50));
        Assert.Equal(new TierFractions(0.2, 0.8, 0), TierFractions.FromPercent(20, 80));
        Assert.Equal(0.5, TierFractions.FromPercent(0, 50).Disk, 12);
    }
}
