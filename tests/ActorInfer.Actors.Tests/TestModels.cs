using ActorInfer.TestSupport;
using ActorInfer.Actors.Configuration;
using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using ActorInfer.Model.Weights;
using Akka.Configuration;
using static TorchSharp.torch;

namespace ActorInfer.Actors.Tests;

/// <summary>A tiny seeded-random OPT (2 layers, hidden 32) and the repository paths the specs need.</summary>
public static class TestModels
{
    public static OptConfig Tiny { get; } = new()
    {
        Name = "test-tiny",
        VocabSize = 100,
        HiddenSize = 32,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        FfnDim = 64,
        MaxPositionEmbeddings = 48,
        WordEmbedProjDim = 32,
        TorchDtype = "float32",
    };

    public static ResidentModel LoadTiny(long seed = 7)
    {
        using var source = new DummyWeightSource(Tiny, seed);
        return ResidentModel.Load(source, Tiny, ScalarType.Float32, CPU);
    }

    /// <summary>Greedy requests with prompts of different lengths (so batches are padded).</summary>
    public static CompletionRequest Request(int i, int maxTokens = 5) => new()
    {
        Prompt = Prompt.FromIds(Enumerable.Range(0, 2 + i % 5).Select(j => 2 + (i * 7 + j * 3) % 90).ToArray()),
        MaxTokens = maxTokens,
        Temperature = i % 3 == 0 ? 0.8 : 0.0,
        Seed = i % 3 == 0 ? 1000 + i : null,
        IgnoreEos = true,
    };

    /// <summary>
    /// Test actor systems get the tensor dispatcher from the real reference.conf. An expected message may take up to 10 s
    /// (TestKit's default is 3 s): on a 2-core machine running other suites' processes beside, a message that comes is
    /// still a pass, and only a failing test waits the longer.
    /// </summary>
    public static Config ActorConfig { get; } =
        ConfigurationFactory.ParseString("akka.loglevel = WARNING\nakka.test.single-expect-default = 10s").WithFallback(SettingsLoader.Reference);

    public static string RepositoryRoot => TestPaths.RepositoryRoot;

    public static string TempDir() => TestPaths.TempDir();
}
