using System.CommandLine;
using System.Text.Json;
using ActorInfer.Cli;
using ActorInfer.Cli.Commands;

namespace ActorInfer.Cli.Tests;

/// <summary>Runs the real `actorinfer` command tree in-process and captures what it prints.</summary>
public static class CliHarness
{
    // Console.Out is process-wide; commands that print to it must not interleave.
    private static readonly Lock ConsoleLock = new();

    public static (int ExitCode, string Out, string Error) Run(params string[] args)
    {
        lock (ConsoleLock)
        {
            var root = new RootCommand("test");
            foreach (var c in CommandCatalog.All()) root.Subcommands.Add(c);
            var stdout = new StringWriter();
            var stderr = new StringWriter();
            var oldOut = Console.Out;
            var oldErr = Console.Error;
            Console.SetOut(stdout);
            Console.SetError(stderr);
            try
            {
                var code = CliRunner.Run(root, args, stderr);
                return (code, stdout.ToString(), stderr.ToString());
            }
            finally
            {
                Console.SetOut(oldOut);
                Console.SetError(oldErr);
            }
        }
    }

    public static List<JsonElement> ReadJsonl(string path) =>
        File.ReadAllLines(path).Where(l => l.Length > 0).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();

    public static string TempDir() => TestPaths.TempDir();
}
