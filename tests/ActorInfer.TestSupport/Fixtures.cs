namespace ActorInfer.TestSupport;

/// <summary>
/// Locates the reference fixtures (<c>fixtures/hf-opt/...</c>): the repository's <c>tests/fixtures</c>, so that a
/// fresh clone tests itself; <c>ACTORINFER_FIXTURES</c> (the <c>fixtures</c> folder) overrides the search.
/// </summary>
public static class Fixtures
{
    public const string EnvironmentVariable = "ACTORINFER_FIXTURES";

    private static readonly Lazy<string> Root = new(FindRoot);

    /// <summary>The <c>fixtures</c> folder.</summary>
    public static string Directory => Root.Value;

    /// <summary>The random-weight OPT models run through Hugging Face.</summary>
    public static IReadOnlyList<string> HfOptModels { get; } = ["opt-tiny", "opt-tiny-postln"];

    public static string HfOpt(string model) => Path.Combine(Directory, "hf-opt", model);

    /// <summary>The random-weight Llama models run through Hugging Face (grouped-query attention, tied and separate heads).</summary>
    public static IReadOnlyList<string> HfLlamaModels { get; } = ["llama-tiny", "llama-tiny-tied"];

    public static string HfLlama(string model) => Path.Combine(Directory, "hf-llama", model);

    /// <summary>The tiny OPT and Llama fixtures with their weights as PyTorch pickles, single and sharded.</summary>
    public static IReadOnlyList<string> HfBinModels { get; } = ["opt-tiny-bin", "opt-tiny-bin-sharded", "llama-tiny-bin", "llama-tiny-bin-sharded"];

    public static string HfBin(string model) => Path.Combine(Directory, "hf-bin", model);

    /// <summary>Every fixture checkpoint folder with expected outputs: hf-opt, hf-llama and hf-bin.</summary>
    public static IReadOnlyList<string> AllModelDirectories =>
        [.. HfOptModels.Select(HfOpt), .. HfLlamaModels.Select(HfLlama), .. HfBinModels.Select(HfBin)];

    private static string FindRoot()
    {
        var fromEnv = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (!string.IsNullOrEmpty(fromEnv))
        {
            return System.IO.Directory.Exists(Path.Combine(fromEnv, "hf-opt"))
                ? fromEnv
                : throw new DirectoryNotFoundException(
                    $"{EnvironmentVariable}={fromEnv} does not hold an hf-opt folder");
        }
        var searched = new List<string>();
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            foreach (var candidate in Candidates(dir))
            {
                searched.Add(candidate);
                if (System.IO.Directory.Exists(Path.Combine(candidate, "hf-opt"))) return candidate;
            }
        }
        throw new DirectoryNotFoundException(
            $"fixtures not found; set {EnvironmentVariable} to the fixtures folder. Searched: " +
            string.Join(", ", searched));
    }

    private static IEnumerable<string> Candidates(DirectoryInfo dir)
    {
        yield return Path.Combine(dir.FullName, "tests", "fixtures");
    }
}
