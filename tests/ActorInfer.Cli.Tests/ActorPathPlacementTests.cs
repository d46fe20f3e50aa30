using System.Text.Json;

namespace ActorInfer.Cli.Tests;

/// <summary>
/// The runtime's correctness list through the actor path (`generate --engine actors`, the default): every
/// placement and block geometry reproduces the reference greedy tokens, for the shared fixtures and for a model
/// the test writes itself.
/// </summary>
public class ActorPathPlacementTests
{
    public static TheoryData<string, string, int, int, bool> Placements() => new()
    {
        { "all device 1x1", "100 0 100 0 100 0", 1, 1, false },
        { "all device 2x3", "100 0 100 0 100 0", 2, 3, false },
        { "weights cpu 4x2", "0 100 100 0 100 0", 4, 2, false },
        { "weights disk 2x3", "0 0 100 0 100 0", 2, 3, false },
        { "cache cpu, cpu attention 2x3", "100 0 0 100 100 0", 2, 3, true },
        { "cache cpu 2x3", "100 0 0 100 100 0", 2, 3, false },
        { "cache disk 4x2", "100 0 0 0 100 0", 4, 2, false },
        { "activations cpu 2x3", "100 0 100 0 0 100", 2, 3, false },
        { "activations disk 1x1", "100 0 100 0 0 0", 1, 1, false },
        { "halves 4x2", "50 50 50 50 50 50", 4, 2, true },
        { "halves with disk 2x3", "50 0 50 0 50 0", 2, 3, false },
    };

    [Theory]
    [MemberData(nameof(Placements))]
    public void Fixtures_reproduce_the_reference_through_the_actors(string name, string percent, int batchSize, int batches, bool cpuAttention)
    {
        foreach (var model in Fixtures.HfOptModels)
        {
            var dir = Fixtures.HfOpt(model);
            var expected = File.ReadAllLines(Path.Combine(dir, "expected.jsonl")).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
            var lines = expected.Select(e =>
                $"{{\"prompt\":{e.GetProperty("prompt_ids").GetRawText()},\"max_tokens\":{e.GetProperty("greedy_new_tokens").GetArrayLength()},\"temperature\":0,\"ignore_eos\":true}}");
            var results = Run(dir, lines, percent, batchSize, batches, cpuAttention);
            for (var i = 0; i < expected.Count; i++)
                Assert.True(Ids(expected[i].GetProperty("greedy_new_tokens")) == Ids(results[i].GetProperty("output_ids")), $"{name}, {model}, prompt {i}");
        }
    }

    /// <summary>Weights on disk, cache on the CPU with CPU attention, and mixed: the Llama fixtures and the pickled checkpoints.</summary>
    public static TheoryData<string, string, int, int, bool> OffloadedPlacements() => new()
    {
        { "weights disk 2x3", "0 0 100 0 100 0", 2, 3, false },
        { "cache cpu, cpu attention 2x3", "100 0 0 100 100 0", 2, 3, true },
        { "halves 4x2", "50 50 50 50 50 50", 4, 2, true },
        { "halves with disk 2x3", "50 0 50 0 50 0", 2, 3, false },
    };

    [Theory]
    [MemberData(nameof(OffloadedPlacements))]
    public void Llama_and_pickled_fixtures_reproduce_the_reference_through_the_actors(string name, string percent, int batchSize, int batches, bool cpuAttention)
    {
        foreach (var dir in Fixtures.HfLlamaModels.Select(Fixtures.HfLlama).Concat(Fixtures.HfBinModels.Select(Fixtures.HfBin)))
        {
            var expected = File.ReadAllLines(Path.Combine(dir, "expected.jsonl")).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
            var lines = expected.Select(e =>
                $"{{\"prompt\":{e.GetProperty("prompt_ids").GetRawText()},\"max_tokens\":{e.GetProperty("greedy_new_tokens").GetArrayLength()},\"temperature\":0,\"ignore_eos\":true}}");
            var results = Run(dir, lines, percent, batchSize, batches, cpuAttention);
            for (var i = 0; i < expected.Count; i++)
                Assert.True(Ids(expected[i].GetProperty("greedy_new_tokens")) == Ids(results[i].GetProperty("output_ids")), $"{name}, {dir}, prompt {i}");
        }
    }

    [Theory]
    [MemberData(nameof(Placements))]
    public void A_test_written_model_reproduces_the_naive_reference_through_the_actors(string name, string percent, int batchSize, int batches, bool cpuAttention)
    {
        var config = ReferenceModels.PostLnProjected();
        var modelDir = Path.Combine(CliHarness.TempDir(), "model");
        var naive = new NaiveOpt(config, ReferenceModels.Write(modelDir, config, seed: 77));
        int[][] prompts = [[2, 17, 33, 101, 45], [2, 1, 1, 9], [2, 150, 7, 7, 8, 19, 60, 3], [5], [2, 3, 4], [2, 200, 100]];
        var results = Run(modelDir, prompts.Select(p => $"{{\"prompt\":[{string.Join(",", p)}],\"max_tokens\":5,\"temperature\":0,\"ignore_eos\":true}}"),
            percent, batchSize, batches, cpuAttention);
        for (var i = 0; i < prompts.Length; i++)
            Assert.True(string.Join(",", naive.Greedy(prompts[i], 5)) ==
                        string.Join(",", results[i].GetProperty("output_ids").EnumerateArray().Select(x => x.GetInt32())), $"{name}, prompt {i}");
    }

    private static string Ids(JsonElement array) => string.Join(",", array.EnumerateArray().Select(x => x.GetInt32()));

    private static List<JsonElement> Run(string model, IEnumerable<string> lines, string percent, int batchSize, int batches, bool cpuAttention)
    {
        var work = CliHarness.TempDir();
        var input = Path.Combine(work, "in.jsonl");
        var output = Path.Combine(work, "out.jsonl");
        File.WriteAllLines(input, lines);
        // Not made here: generate makes a missing --disk-dir.
        var disk = Path.Combine(work, "disk");
        string[] args = ["generate", "--model", model, "--input", input, "--output", output, "--engine", "actors",
            "--percent", .. percent.Split(' '), "--gpu-batch-size", $"{batchSize}", "--num-gpu-batches", $"{batches}", "--disk-dir", disk];
        var (code, _, error) = CliHarness.Run([.. args, "--cpu-attention", cpuAttention ? "on" : "off"]);
        Assert.True(code == 0, error);
        Assert.True(Directory.Exists(disk));
        return CliHarness.ReadJsonl(output);
    }
}
