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
