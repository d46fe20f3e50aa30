namespace ActorInfer.TestSupport;

/// <summary>Where the tests find the repository and put their scratch files.</summary>
public static class TestPaths
{
    /// <summary>The folder holding ActorInfer.sln, found above the test assembly.</summary>
    public static string RepositoryRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "ActorInfer.sln"))) return dir.FullName;
            throw new DirectoryNotFoundException("ActorInfer.sln not found above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>A new, empty folder under the system's temp folder.</summary>
    public static string TempDir()
    {
        var dir = Path.Combine(Path.GetTempPath(), "actorinfer-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }
}
