using System.IO.Compression;
using System.Text;
using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using TorchSharp;

namespace ActorInfer.Model.Tests.Weights;

/// <summary>PyTorch pickle checkpoints: the fixtures read tensor for tensor as their safetensors twins; anything but data refused.</summary>
public sealed class PickleCheckpointTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "actorinfer-pickle-tests", Guid.NewGuid().ToString("N"));

    public PickleCheckpointTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string, string> Twins => new()
    {
        { "opt-tiny-bin", "hf-opt/opt-tiny" },
        { "opt-tiny-bin-sharded", "hf-opt/opt-tiny" },
        { "llama-tiny-bin", "hf-llama/llama-tiny" },
        { "llama-tiny-bin-sharded", "hf-llama/llama-tiny" },
    };

    [Theory]
    [MemberData(nameof(Twins))]
    public void Every_tensor_equals_its_safetensors_twin(string model, string twin)
    {
        var dir = Fixtures.HfBin(model);
        var twinDir = twin.StartsWith("hf-opt", StringComparison.Ordinal) ? Fixtures.HfOpt(Path.GetFileName(twin)) : Fixtures.HfLlama(Path.GetFileName(twin));
        var config = ModelConfigs.Resolve(dir);
        using var pickled = PickleCheckpoint.Open(dir);
        using var safetensors = SafetensorsCheckpoint.Open(twinDir);
        pickled.Validate(config);
        Assert.Equal(safetensors.Names.Order(), pickled.Names.Order());
        using var scope = torch.NewDisposeScope();
        foreach (var name in safetensors.Names)
        {
            Assert.Equal(torch.ScalarType.Float16, pickled.Dtype(name));
            var a = pickled.Load(name, torch.ScalarType.Float16, torch.CPU);
            var b = safetensors.Load(name, torch.ScalarType.Float16, torch.CPU);
            Assert.Equal(b.shape, a.shape);
            Assert.True(a.eq(b).all().item<bool>(), $"{model}: {name} differs from {twin}");
        }
        if (model.EndsWith("sharded", StringComparison.Ordinal))
            Assert.Equal(2, Directory.GetFiles(dir, "pytorch_model-*.bin").Length);
    }

    [Fact]
    public void A_pickle_that_imports_a_function_is_refused_before_it_could_run()
    {
        // GLOBAL posix.system, the argument tuple, REDUCE: what `torch.load` without weights_only would call.
        var marker = Path.Combine(_dir, "ran");
        var error = Refused(Protocol2(Global("posix", "system"), Text($"touch {marker}"), [0x85], [0x52]));
        Assert.Contains("posix.system", error);
        Assert.Contains("refused", error);
        Assert.False(File.Exists(marker));
    }

    [Fact]
    public void A_pickle_that_imports_through_the_stack_is_refused()
    {
        // Protocol 4 spells imports as two strings and STACK_GLOBAL.
        byte[] shortText(string s) => [0x8c, (byte)s.Length, .. Encoding.ASCII.GetBytes(s)];
        var error = Refused([0x80, 0x04, .. shortText("builtins"), .. shortText("eval"), 0x93, .. shortText("1+1"), 0x85, 0x52, 0x2e]);
        Assert.Contains("builtins.eval", error);
    }

    [Fact]
    public void A_pickle_that_builds_an_object_another_way_is_refused()
    {
        // INST (module, name, then arguments from a mark): an opcode a state dict never uses.
        var error = Refused([0x80, 0x02, 0x28, .. Text("x"), .. Encoding.ASCII.GetBytes("ios\nsystem\n"), 0x2e]);
        Assert.Contains("opcode 0x69", error);
    }

    [Fact]
    public void A_state_dict_entry_that_is_not_a_tensor_is_refused_by_name()
    {
        // {"decoder.layers.0.note": 7}
        var error = Refused(Protocol2([0x7d], Text("decoder.layers.0.note"), [0x4b, 7], [0x73]));
        Assert.Contains("'decoder.layers.0.note' is a int64", error);
    }

    [Fact]
    public void A_folder_without_any_checkpoint_names_every_file_it_looked_for()
    {
        var config = ModelConfigs.Resolve(Fixtures.HfLlama("llama-tiny"));
        var error = Assert.Throws<FileNotFoundException>(() => ModelFiles.OpenCheckpoint(_dir, config)).Message;
        foreach (var file in new[] { "model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json", "pytorch_model.bin" })
            Assert.Contains(file, error);
    }

    private string Refused(byte[] pickle)
    {
        var path = Path.Combine(_dir, PickleCheckpoint.SingleFile);
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
        {
            Add(zip, "archive/data.pkl", pickle);
            Add(zip, "archive/byteorder", Encoding.ASCII.GetBytes("little"));
        }
        return Assert.Throws<InvalidDataException>(() => PickleCheckpoint.Open(_dir)).Message;
    }

    private static void Add(ZipArchive zip, string name, byte[] bytes)
    {
        using var stream = zip.CreateEntry(name, CompressionLevel.NoCompression).Open();
        stream.Write(bytes);
    }

    private static byte[] Protocol2(params byte[][] parts) => [0x80, 0x02, .. parts.SelectMany(p => p), 0x2e];

    private static byte[] Global(string module, string name) => [0x63, .. Encoding.ASCII.GetBytes($"{module}\n{name}\n")];

    private static byte[] Text(string s) => [0x58, .. BitConverter.GetBytes(s.Length), .. Encoding.UTF8.GetBytes(s)];
}
