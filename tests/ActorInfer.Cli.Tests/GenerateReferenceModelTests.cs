using System.Text.Json;
using ActorInfer.Model.Config;

namespace ActorInfer.Cli.Tests;

/// <summary>
/// Models the tests write themselves (other shapes, post-LN with projections, no biases, no LayerNorm affine),
/// checked against <see cref="NaiveOpt"/>, a plain-loop reference that shares no code with the model.
/// </summary>
public class GenerateReferenceModelTests
{
    public static TheoryData<string> Configs() => ["preln", "postln", "plain"];

    private static OptConfig ConfigFor(string name) => name switch
    {
        "preln" => ReferenceModels.PreLn(),
        "postln" => ReferenceModels.PostLnProjected(),
        _ => ReferenceModels.NoBiasNoAffine(),
    };

    [Theory]
    [MemberData(nameof(Configs))]
    public void Greedy_tokens_and_prompt_logprobs_match_the_naive_reference(string name)
    {
        var config = ConfigFor(name);
        var work = CliHarness.TempDir();
        var modelDir = Path.Combine(work, "model");
        var weights = ReferenceModels.Write(modelDir, config, seed: 1234);
        var naive = new NaiveOpt(config, weights);

        // Different lengths (left padding), and the pad id 1 as a real token inside a prompt.
        int[][] prompts = [[2, 17, 33, 101, 45], [2, 1, 1, 9], [2, 150, 7, 7, 7, 7, 8, 19, 60, 3], [5]];
        const int newTokens = 6;
        var input = Path.Combine(work, "in.jsonl");
        File.WriteAllLines(input, prompts.Select(p =>
            $"{{\"prompt\":[{string.Join(",", p)}],\"max_tokens\":{newTokens},\"temperature\":0,\"ignore_eos\":true,\"echo\":true,\"logprobs\":1}}"));

        foreach (var batch in new[] { "4", "1" })
        {
            var output = Path.Combine(work, $"out-{batch}.jsonl");
            var (code, _, error) = CliHarness.Run("generate", "--model", modelDir, "--input", input, "--output", output, "--batch-size", batch);
            Assert.True(code == 0, error);
            var results = CliHarness.ReadJsonl(output);
            for (var i = 0; i < prompts.Length; i++)
            {
                var got = results[i].GetProperty("output_ids").EnumerateArray().Select(x => x.GetInt32()).ToList();
                Assert.Equal(naive.Greedy(prompts[i], newTokens), got);
                var logits = naive.Forward(prompts[i]);
                var logprobs = results[i].GetProperty("prompt_logprobs").EnumerateArray().ToList();
                Assert.Equal(JsonValueKind.Null, logprobs[0].ValueKind);
                for (var j = 1; j < prompts[i].Length; j++)
                {
                    var want = NaiveOpt.LogSoftmax(logits[j - 1])[prompts[i][j]];
                    Assert.True(Math.Abs(want - logprobs[j].GetDouble()) <= 1e-4, $"{name} prompt {i} token {j}");
                }
            }
        }
    }
}
