using System.CommandLine;
using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Control;

namespace ActorInfer.Cli.Commands;

/// <summary>`actorinfer pressure`: an operator budget command for a running node's memory-pressure actor.</summary>
public static class PressureCommand
{
    public static Command Create()
    {
        var command = new Command("pressure", "Set (or clear) a tier's memory budget on a running node.");
        var node = new Option<string>("--node") { Description = "The node's data folder (its control spool is DATA/control/).", Required = true };
        var tier = new Option<string>("--tier") { Description = "gpu, cpu or disk.", Required = true };
        tier.AcceptOnlyFromAmong("gpu", "cpu", "disk");
        var budget = new Option<string?>("--budget") { Description = "The budget: bytes, 512MiB, 8GiB ...; 'clear' returns the tier to its configured or measured budget." };
        command.Options.Add(node);
        command.Options.Add(tier);
        command.Options.Add(budget);
        command.SetAction(parse =>
        {
            var dataDir = parse.GetValue(node)!;
            if (dataDir.StartsWith("http://", StringComparison.Ordinal) || dataDir.StartsWith("https://", StringComparison.Ordinal))
                throw new CliException("--node URL needs the HTTP gateway, which this build does not have yet: give the node's data folder", 2);
            if (!Directory.Exists(dataDir)) throw new CliException($"--node: the data folder '{dataDir}' does not exist");
            var text = parse.GetValue(budget) ?? throw new CliException("--budget is required (a size, or 'clear')", 2);
            long? bytes = text == "clear" ? null
                : ByteSize.TryParse(text, out var b) ? b
                : throw new CliException($"--budget: '{text}' is not a byte size (e.g. 8GiB, 512MiB) or 'clear'", 2);
            var path = ControlProtocol.WriteBudgetCommand(dataDir, ControlProtocol.ParseTier(parse.GetValue(tier)!), bytes);
            Console.WriteLine($"pressure: {parse.GetValue(tier)} budget {(bytes is { } v ? ByteSize.Format(v) : "cleared")} sent ({path})");
            return 0;
        });
        return command;
    }
}
