using System.Buffers.Binary;
using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using TorchSharp;

namespace ActorInfer.Model.Tests.Weights;

public sealed class SafetensorsRoundTripTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("actorinfer-st-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(SafetensorsReader.DefaultChunkBytes)]
    // Chunks smaller than one element and not a multiple of any element size.
    [InlineData(3)]
    [InlineData(10)]
    public void WhatIsWrittenReadsBackBitForBit(int chunkBytes)
    {
        using var scope = torch.NewDisposeScope();
        var generator = new torch.Generator(7, torch.CPU);
        var tensors = new Dictionary<string, torch.Tensor>
        {
            ["b.f16"] = torch.randn([5, 3], generator: generator).to(torch.float16),
            ["a.bf16"] = torch.randn([7], generator: generator).to(torch.bfloat16),
            ["c.f32"] = torch.randn([2, 3, 4], generator: generator),
            ["d.f64"] = torch.randn([3], torch.float64, generator: generator),
            ["e.i64"] = torch.arange(0, 12, dtype: torch.int64).reshape(3, 4) - 5,
            ["f.empty"] = torch.empty([0, 4]),
            ["g.scalar"] = torch.tensor(3.5f),
        };
        var path = Path.Combine(_dir, "t.safetensors");
        SafetensorsWriter.Write(path, tensors);

        using var reader = SafetensorsReader.Open(path, chunkBytes);
        Assert.Equal(tensors.Keys.Order(), reader.Names.Order());
        foreach (var (name, expected) in tensors)
        {
            var actual = reader.Load(name);
            Assert.Equal(expected.dtype, actual.dtype);
            Assert.Equal(expected.shape, actual.shape);
            Assert.Equal(expected.shape, reader.Shape(name));
            Assert.Equal(expected.contiguous().bytes.ToArray(), actual.bytes.ToArray());
        }
    }

    [Fact]
    public void HeaderIsPaddedSoDataIsEightByteAligned()
    {
        using var scope = torch.NewDisposeScope();
        var path = Path.Combine(_dir, "aligned.safetensors");
        SafetensorsWriter.Write(path, new Dictionary<string, torch.Tensor> { ["x"] = torch.ones(3) },
            new Dictionary<string, string> { ["format"] = "pt" });
        var bytes = File.ReadAllBytes(path);
        var headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, (8 + headerLength) % 8);
        Assert.Equal(8 + headerLength + 12, bytes.Length);
        Assert.StartsWith("{\"__metadata__\":{\"format\":\"pt\"},\"x\":", System.Text.Encoding.UTF8.GetString(bytes, 8, (int)headerLength));
    }

    [Fact]
    public void LoadConvertsToTheRequestedDtype()
    {
        using var scope = torch.NewDisposeScope();
        var stored = torch.tensor(new float[] { 1.5f, -2.25f, 1e-3f }).to(torch.float16);
        var path = Path.Combine(_dir, "h.safetensors");
        SafetensorsWriter.Write(path, new Dictionary<string, torch.Tensor> { ["model.decoder.w"] = stored });
        using var reader = SafetensorsReader.Open(path);

        var asFloat = reader.Load("decoder.w", torch.float32, torch.CPU);
        Assert.Equal(torch.float32, asFloat.dtype);
        Assert.Equal(stored.to(torch.float32).data<float>().ToArray(), asFloat.data<float>().ToArray());
        Assert.True(reader.Contains("model.decoder.w"));
        Assert.True(reader.Contains("decoder.w"));
        Assert.False(reader.Contains("decoder.v"));
    }

    [Fact]
    public void ShardedCheckpointsResolveEveryTensorThroughTheIndex()
    {
        using var scope = torch.NewDisposeScope();
        SafetensorsWriter.Write(Path.Combine(_dir, "model-00001-of-00002.safetensors"),
            new Dictionary<string, torch.Tensor> { ["model.decoder.a"] = torch.full(2, 1f) });
        SafetensorsWriter.Write(Path.Combine(_dir, "model-00002-of-00002.safetensors"),
            new Dictionary<string, torch.Tensor> { ["model.decoder.b"] = torch.full(3, 2f), ["lm_head.weight"] = torch.full(1, 3f) });
        File.WriteAllText(Path.Combine(_dir, SafetensorsCheckpoint.IndexFile), """
            {"metadata": {"total_size": 24}, "weight_map": {
              "model.decoder.a": "model-00001-of-00002.safetensors",
              "model.decoder.b": "model-00002-of-00002.safetensors",
              "lm_head.weight": "model-00002-of-00002.safetensors"}}
            """);

        using var checkpoint = SafetensorsCheckpoint.Open(_dir);
        Assert.Equal(2, checkpoint.Files.Count);
        Assert.Equal(["decoder.a", "decoder.b", "lm_head.weight"], checkpoint.Names.Order());
        Assert.Equal([1f, 1f], checkpoint.Load("decoder.a", torch.float32, torch.CPU).data<float>().ToArray());
        Assert.Equal([2f, 2f, 2f], checkpoint.Load("model.decoder.b", torch.float32, torch.CPU).data<float>().ToArray());
        Assert.Equal([1L], checkpoint.Shape("lm_head.weight"));
        Assert.Equal(torch.float32, checkpoint.Dtype("lm_head.weight"));
        var missing = Assert.Throws<InvalidDataException>(() => checkpoint.Shape("decoder.c"));
        Assert.Contains("decoder.c", missing.Message);
    }

    [Fact]
    public void ARandomCheckpointLoadsBackAsTheDummyWeightsItWasDrawnFrom()
    {
        var config = TestCheckpoints.Tiny() with { WordEmbedProjDim = 8, DoLayerNormBefore = false };
        TestCheckpoints.WriteRandom(_dir, config, seed: 3, dtype: torch.ScalarType.Float32);
        using var checkpoint = SafetensorsCheckpoint.Open(_dir);
        using var dummy = new DummyWeightSource(config, seed: 3);
        checkpoint.Validate(config);
        using var scope = torch.NewDisposeScope();
        foreach (var (name, _) in WeightSourceValidation.ExpectedTensors(config))
        {
            Assert.Equal(
                dummy.Load(name, torch.float32, torch.CPU).data<float>().ToArray(),
                checkpoint.Load(name, torch.float32, torch.CPU).data<float>().ToArray());
        }
    }

    [Fact]
    public void ConcurrentLoadsFromOneReaderDoNotInterfere()
    {
        using var scope = torch.NewDisposeScope();
        var tensors = Enumerable.Range(0, 16).ToDictionary(
            i => $"t{i}", i => torch.arange(i * 1000, i * 1000 + 5000, dtype: torch.int64));
        var path = Path.Combine(_dir, "many.safetensors");
        SafetensorsWriter.Write(path, tensors);
        using var reader = SafetensorsReader.Open(path, chunkBytes: 64);
        var sums = new long[16];
        Parallel.For(0, 64, new ParallelOptions { MaxDegreeOfParallelism = 4 }, k =>
        {
            var i = k % 16;
            using var loaded = reader.Load($"t{i}");
            using var sum = loaded.sum();
            Interlocked.Add(ref sums[i], sum.item<long>());
        });
        for (var i = 0; i < 16; i++)
            Assert.Equal(4 * (5000L * i * 1000 + 5000L * 4999 / 2), sums[i]);
    }
}
