using System.Buffers.Binary;
using System.Text;
using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using TorchSharp;

namespace ActorInfer.Model.Tests.Weights;

public sealed class SafetensorsErrorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("actorinfer-st-err-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void MissingFilesAreNamed()
    {
        var file = Path.Combine(_dir, "absent.safetensors");
        Assert.Contains(file, Assert.Throws<FileNotFoundException>(() => SafetensorsReader.Open(file)).Message);
        var error = Assert.Throws<FileNotFoundException>(() => SafetensorsCheckpoint.Open(_dir));
        Assert.Contains("holds neither model.safetensors.index.json nor model.safetensors", error.Message);
        Assert.Throws<DirectoryNotFoundException>(() => SafetensorsCheckpoint.Open(Path.Combine(_dir, "nope")));
    }

    [Fact]
    public void AnIndexNamingAMissingShardIsAnError()
    {
        File.WriteAllText(Path.Combine(_dir, SafetensorsCheckpoint.IndexFile),
            """{"weight_map": {"model.decoder.a": "model-00001-of-00002.safetensors"}}""");
        var error = Assert.Throws<FileNotFoundException>(() => SafetensorsCheckpoint.Open(_dir));
        Assert.Contains("model-00001-of-00002.safetensors", error.Message);

        File.WriteAllText(Path.Combine(_dir, SafetensorsCheckpoint.IndexFile),
            """{"weight_map": {"model.decoder.a": "../elsewhere.safetensors"}}""");
        Assert.Contains("not a file name",
            Assert.Throws<InvalidDataException>(() => SafetensorsCheckpoint.Open(_dir)).Message);
    }

    [Fact]
    public void ATruncatedFileNamesTheTensorThatRunsPastTheEnd()
    {
        var path = WriteTwoTensors();
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^4]);
        var error = Assert.Throws<InvalidDataException>(() => SafetensorsReader.Open(path));
        Assert.Contains(path, error.Message);
        Assert.Contains("truncated", error.Message);
        Assert.Contains("tensor second", error.Message);

        File.WriteAllBytes(path, bytes[..5]);
        Assert.Contains("no header", Assert.Throws<InvalidDataException>(() => SafetensorsReader.Open(path)).Message);
    }

    [Fact]
    public void CorruptHeadersAreRejected()
    {
        var path = Path.Combine(_dir, "bad.safetensors");
        File.WriteAllBytes(path, [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, (byte)'{', (byte)'}']);
        Assert.Contains("claims 4294967295 header bytes",
            Assert.Throws<InvalidDataException>(() => SafetensorsReader.Open(path)).Message);

        WriteRaw(path, "{\"x\": {\"dtype\": \"F32\", ", []);
        Assert.Contains("corrupt header", Assert.Throws<InvalidDataException>(() => SafetensorsReader.Open(path)).Message);
    }

    [Theory]
    [InlineData("""{"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}}""", "tensor w spans 20 bytes but its shape [2, 3] of F32 needs 24")]
    [InlineData("""{"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}""", "tensor w has unsupported dtype 'C64'")]
    [InlineData("""{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}""", "tensor w has an invalid shape [-1]")]
    [InlineData("""{"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}""", "tensor w has invalid data_offsets")]
    [InlineData("""{"w": {"dtype": "F32", "data_offsets": [0, 4]}}""", "tensor w lacks a shape")]
    public void HeaderEntriesMustAgreeWithTheirData(string header, string expected)
    {
        var path = Path.Combine(_dir, "entry.safetensors");
        WriteRaw(path, header, new byte[24]);
        var error = Assert.Throws<InvalidDataException>(() => SafetensorsReader.Open(path));
        Assert.Contains(path, error.Message);
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void ValidateNamesTheFirstMisshapenTensor()
    {
        var config = TestCheckpoints.Tiny();
        TestCheckpoints.WriteRandom(_dir, config, reshape: (name, shape) =>
            name == "decoder.layers.0.fc1.weight" ? [16, 16] : shape);
        using var checkpoint = SafetensorsCheckpoint.Open(_dir);
        var error = Assert.Throws<InvalidDataException>(() => checkpoint.Validate(config));
        Assert.Equal("tensor decoder.layers.0.fc1.weight has shape [16, 16] but the config needs [32, 16]", error.Message);
    }

    [Fact]
    public void ValidateNamesAMissingTensor()
    {
        var config = TestCheckpoints.Tiny();
        TestCheckpoints.WriteRandom(_dir, config, keep: name => name != "decoder.layers.1.fc2.bias");
        using var checkpoint = SafetensorsCheckpoint.Open(_dir);
        var error = Assert.Throws<InvalidDataException>(() => checkpoint.Validate(config));
        Assert.Contains("lacks tensor decoder.layers.1.fc2.bias", error.Message);
        checkpoint.Validate(config with { EnableBias = false, NumHiddenLayers = 1 });
    }

    private string WriteTwoTensors()
    {
        using var scope = torch.NewDisposeScope();
        var path = Path.Combine(_dir, "two.safetensors");
        SafetensorsWriter.Write(path, new Dictionary<string, torch.Tensor>
        {
            ["first"] = torch.ones(4), ["second"] = torch.ones(4),
        });
        return path;
    }

    private static void WriteRaw(string path, string header, byte[] data)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)json.Length);
        json.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + json.Length);
        File.WriteAllBytes(path, bytes);
    }
}
