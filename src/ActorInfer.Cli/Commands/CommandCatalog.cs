using System.CommandLine;

namespace ActorInfer.Cli.Commands;

/// <summary>Every subcommand of the `actorinfer` program; each lives in its own file.</summary>
public static class CommandCatalog
{
    public static IEnumerable<Command> All()
    {
        yield return GenerateCommand.Create();
        yield return BenchCommand.Create();
        yield return InfoCommand.Create();
        yield return VersionCommand.Create();
        yield return NodeCommand.Create();
        yield return PressureCommand.Create();
        yield return PlanCommand.Create();
        yield return ProfileCommand.Create();
        yield return ReportCommand.Create();
        yield return ReplayCommand.Create();
    }
}
