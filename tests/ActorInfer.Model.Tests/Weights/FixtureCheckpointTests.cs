using System.Buffers.Binary;
using System.Text.Json;
using ActorInfer.Model.Config;
using ActorInfer.Model.Weights;
using TorchSharp;

namespace ActorInfer.Model.Tests.Weights;

public sealed class FixtureCheckpointTests
{
    public static TheoryData<string> Models => new(Fixtures.HfOptModels);

    [Theory]
    [MemberData(nameof(Models))]
    public void HuggingFaceCheckpointsMatchTheirConfigs(string model)
    {
        var dir = Fixtures.HfOpt(model);
        var config = OptConfigs.Resolve(dir);
        using var checkpoint = SafetensorsCheckpoint.Open(dir);
        checkpoint.Validate(config);
        Assert.Equal(WeightSourceValidation.ExpectedTensors(config).Count(), checkpoint.Names.Count());

        using var scope = torch.NewDisposeScope();
        var embed = checkpoint.Load(OptWeightNames.EmbedTokens, torch.float32, torch.CPU);
        Assert.Equal([config.VocabSize, config.WordEmbedProjDim], embed.shape);
        Assert.Equal(torch.float16, checkpoint.Dtype(OptWeightNames.EmbedTokens));
        Assert.Equal(FirstHalfOf(Path.Combine(dir, SafetensorsCheckpoint.SingleFile), "model." + OptWeightNames.EmbedTokens),
            embed[0, 0].item<float>());
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void ExpectedOutputsReadAsInt64AndFloat32(string model)
    {
        var dir = Fixtures.HfOpt(model);
        var config = OptConfigs.Resolve(dir);
        using var reader = SafetensorsReader.Open(Path.Combine(dir, "expected.safetensors"));
        using var scope = torch.NewDisposeScope();
        var inputIds = reader.Load("input_ids");
        var mask = reader.Load("attention_mask");
        var greedy = reader.Load("greedy_new_tokens");
        var logits = reader.Load("logits");
        Assert.Equal(torch.int64, inputIds.dtype);
        Assert.Equal(torch.float32, logits.dtype);
        Assert.Equal([inputIds.shape[0], inputIds.shape[1], config.VocabSize], logits.shape);
        Assert.True(logits.isfinite().all().item<bool>());

        // The batch holds the token-id prompts of expected.jsonl, left-padded: the same ids come out of both files.
        var prompts = File.ReadLines(Path.Combine(dir, "expected.jsonl"))
            .Select(line => JsonDocument.Parse(line).RootElement)
            .Where(line => !line.TryGetProperty("prompt_text", out _))
            .ToArray();
        Assert.Equal(prompts.Length, inputIds.shape[0]);
        for (var row = 0; row < prompts.Length; row++)
        {
            var ids = inputIds[row].data<long>().ToArray();
            var keep = mask[row].data<long>().ToArray();
            var real = ids.Where((_, i) => keep[i] == 1).ToArray();
            Assert.Equal(prompts[row].GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt64()), real);
            Assert.Equal(prompts[row].GetProperty("greedy_new_tokens").EnumerateArray().Select(e => e.GetInt64()),
                greedy[row].data<long>().ToArray());
        }
    }

    /// <summary>Decodes the first float16 of a tensor straight from the file, independently of the reader.</summary>
    private static float FirstHalfOf(string path, string name)
    {
        var bytes = File.ReadAllBytes(path);
        var headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        using var header = JsonDocument.Parse(bytes.AsMemory(8, headerLength));
        var begin = header.RootElement.GetProperty(name).GetProperty("data_offsets")[0].GetInt32();
        return (float)BitConverter.ToHalf(bytes, 8 + headerLength + begin);
    }
}
