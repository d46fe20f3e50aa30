using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Weights;
using ActorInfer.TestSupport;
using static TorchSharp.torch;

namespace ActorInfer.Model.Tests.Generation;

/// <summary>
/// A batch whose long prompt finishes early beside a short prompt that generates long: the finished sequence goes on
/// through the batch's steps past the model's context, and neither request's tokens change.
/// </summary>
public class MixedLengthBatchTests
{
    /// <summary>A 60-token prompt generating 2 tokens and a 2-token prompt generating 40, in a context of 64.</summary>
    public static SequenceState[] LongAndShort(OptConfig config)
    {
        int[] longPrompt = [.. Enumerable.Range(0, 60).Select(j => 3 + j * 7 % (config.VocabSize - 3))];
        int[] shortPrompt = [5, 6];
        return
        [
            new(new CompletionRequest { Prompt = Prompt.FromIds(longPrompt), MaxTokens = 2, Temperature = 0, IgnoreEos = true }, longPrompt, 0, config.EosTokenId),
            new(new CompletionRequest { Prompt = Prompt.FromIds(shortPrompt), MaxTokens = 40, Temperature = 0, IgnoreEos = true }, shortPrompt, 0, config.EosTokenId),
        ];
    }

    [Fact]
    public void A_sequence_that_finished_runs_past_the_context_without_changing_either_result()
    {
        var dir = Fixtures.HfOpt("opt-tiny");
        var config = OptConfigs.Resolve(dir);
        Assert.Equal(64, config.MaxPositionEmbeddings);
        using var source = ModelFiles.OpenCheckpoint(dir, config);
        using var model = ResidentModel.Load(source, config, ScalarType.Float32, CPU);
        var together = LongAndShort(config);
        BatchGenerator.Run(model, together, _ => "");
        var alone = LongAndShort(config);
        foreach (var s in alone) BatchGenerator.Run(model, [s], _ => "");
        Assert.Equal([2, 40], together.Select(s => s.OutputIds.Count));
        Assert.Equal(alone.Select(s => s.OutputIds), together.Select(s => s.OutputIds));
    }
}
