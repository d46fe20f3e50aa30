using System.Text.Json;
using ActorInfer.Model.Weights;
using TorchSharp;

namespace ActorInfer.Cli.Tests;

/// <summary>
/// `actorinfer generate` against what Hugging Face transformers computed for the shared fixtures (OPT and Llama, safetensors
/// and PyTorch pickles): greedy tokens
/// exactly, prompt log-probabilities within 1e-4 of the reference logits, the tokenizer's ids and text. Also with
/// `--decode-attention efficient`, which attends over the cache's length rounded up to 64, its unwritten entries masked, with
/// `--decode-attention fused` (its kernel is CUDA's; on the CPU the flag must leave the results as they are), and
/// with `--batch-invariant`, where each prompt's tokens and log-probabilities are also the same bits in any batch size, and
/// with `--cuda-graphs` (on the CPU its layer path runs uncaptured: the index-written cache, the rounded masked length, the
/// alternating hidden-state buffers).
/// </summary>
public class GenerateFixtureTests
{
    public static TheoryData<string, int, string> Cases()
    {
        var data = new TheoryData<string, int, string>();
        foreach (var dir in Fixtures.AllModelDirectories)
        {
            var model = Path.Combine(Path.GetFileName(Path.GetDirectoryName(dir)!), Path.GetFileName(dir));
            data.Add(model, 8, "products"); // the whole file in one batch
            data.Add(model, 1, "products"); // each prompt alone
            data.Add(model, 8, "efficient"); // the rounded, masked cache length
            data.Add(model, 3, "fused"); // our fused kernel's path (on the CPU libtorch's attention over the same cache)
            data.Add(model, 3, "batch-invariant"); // --batch-invariant: fixed-size products, each prompt apart from its padding
            data.Add(model, 8, "cuda-graphs"); // --cuda-graphs: the captured layer path (uncaptured on the CPU)
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Greedy_tokens_logprobs_ids_and_text_match_the_reference(string model, int batchSize, string decodeAttention)
    {
        var dir = Path.Combine(Fixtures.Directory, model);
        var expected = File.ReadAllLines(Path.Combine(dir, "expected.jsonl"))
            .Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        var work = CliHarness.TempDir();
        var input = Path.Combine(work, "in.jsonl");
        var output = Path.Combine(work, "out.jsonl");
        File.WriteAllLines(input, expected.Select((e, i) =>
        {
            var greedy = e.GetProperty("greedy_new_tokens").GetArrayLength();
            var isText = e.TryGetProperty("prompt_text", out var text);
            var prompt = isText ? JsonSerializer.Serialize(text.GetString()) : e.GetProperty("prompt_ids").GetRawText();
            // Token-id prompts ask for echo + logprobs (prompt log-probabilities); text prompts for plain text.
            var extra = isText ? "" : ",\"echo\":true,\"logprobs\":1";
            return $"{{\"id\":\"p{i}\",\"prompt\":{prompt},\"max_tokens\":{greedy},\"temperature\":0,\"ignore_eos\":true{extra}}}";
        }));

        var (code, _, error) = CliHarness.Run(["generate", "--model", dir, "--input", input, "--output", output,
            "--batch-size", batchSize.ToString(), .. decodeAttention switch
            {
                "batch-invariant" => ["--batch-invariant"],
                "cuda-graphs" => ["--cuda-graphs"],
                _ => new[] { "--decode-attention", decodeAttention },
            }]);
        Assert.True(code == 0, error);

        var results = CliHarness.ReadJsonl(output);
        Assert.Equal(expected.Count, results.Count);
        var reference = ReferenceLogprobs(dir);
        for (var i = 0; i < expected.Count; i++)
        {
            var e = expected[i];
            var r = results[i];
            Assert.Equal($"p{i}", r.GetProperty("id").GetString());
            var promptIds = Ints(e.GetProperty("prompt_ids"));
            Assert.Equal(promptIds, Ints(r.GetProperty("prompt_ids")));
            Assert.Equal(Ints(e.GetProperty("greedy_new_tokens")), Ints(r.GetProperty("output_ids")));
            Assert.Equal("length", r.GetProperty("finish_reason").GetString());
            if (e.TryGetProperty("prompt_text", out _))
            {
                Assert.Equal(e.GetProperty("greedy_text").GetString(), r.GetProperty("text").GetString());
                continue;
            }
            var logprobs = r.GetProperty("prompt_logprobs").EnumerateArray().ToList();
            Assert.Equal(JsonValueKind.Null, logprobs[0].ValueKind);
            var want = reference[string.Join(",", promptIds)];
            for (var j = 1; j < promptIds.Count; j++)
                Assert.True(Math.Abs(want[j] - logprobs[j].GetDouble()) <= 1e-4,
                    $"{model} prompt {i} token {j}: {logprobs[j].GetDouble()} vs reference {want[j]}");
        }
    }

    private static List<int> Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToList();

    /// <summary>Per token-id prompt (keyed by its ids): log-softmax of the reference logits at each prompt token.</summary>
    private static Dictionary<string, double[]> ReferenceLogprobs(string dir)
    {
        using var scope = torch.NewDisposeScope();
        using var file = SafetensorsReader.Open(Path.Combine(dir, "expected.safetensors"));
        var ids = file.Load("input_ids");
        var mask = file.Load("attention_mask").to_type(torch.ScalarType.Int64);
        var logprobs = file.Load("logits").to_type(torch.ScalarType.Float64).log_softmax(-1);
        var result = new Dictionary<string, double[]>();
        for (var b = 0; b < ids.shape[0]; b++)
        {
            var row = ids[b].data<long>().ToArray();
            var m = mask[b].data<long>().ToArray();
            var start = Array.IndexOf(m, 1L);
            var prompt = row.Skip(start).Select(x => (int)x).ToArray();
            var values = new double[prompt.Length];
            for (var j = 1; j < prompt.Length; j++)
                values[j] = logprobs[b, start + j - 1, prompt[j]].item<double>();
            result[string.Join(",", prompt)] = values;
        }
        return result;
    }

    [Theory]
    [InlineData("hf-opt/opt-tiny")]
    [InlineData("hf-llama/llama-tiny")]
    public void Batch_invariant_generation_gives_each_prompt_the_same_bits_in_any_batch_size(string model)
    {
        var dir = Path.Combine(Fixtures.Directory, model);
        var work = CliHarness.TempDir();
        var input = Path.Combine(work, "in.jsonl");
        File.WriteAllLines(input, File.ReadAllLines(Path.Combine(dir, "expected.jsonl"))
            .Select(l => JsonDocument.Parse(l).RootElement)
            .Where(e => e.TryGetProperty("prompt_ids", out _) && !e.TryGetProperty("prompt_text", out _))
            .Select((e, i) => $"{{\"id\":\"p{i}\",\"prompt\":{e.GetProperty("prompt_ids").GetRawText()},\"max_tokens\":6,\"temperature\":0,\"ignore_eos\":true,\"echo\":true,\"logprobs\":1}}"));
        string[] Lines(int batchSize)
        {
            var output = Path.Combine(work, $"out-{batchSize}.jsonl");
            var (code, _, error) = CliHarness.Run("generate", "--model", dir, "--input", input, "--output", output, "--batch-size", batchSize.ToString(),
                "--batch-invariant");
            Assert.True(code == 0, error);
            // The tokens and log-probabilities as written: the shortest text that reads back the same float.
            return [.. CliHarness.ReadJsonl(output).Select(r =>
                $"{r.GetProperty("output_ids").GetRawText()} {r.GetProperty("output_logprobs").GetRawText()} {r.GetProperty("prompt_logprobs").GetRawText()}")];
        }
        var together = Lines(8);
        Assert.True(together.Length >= 2, "the fixture needs several token-id prompts");
        Assert.Equal(together, Lines(1));
        Assert.Equal(together, Lines(3));
    }
}
