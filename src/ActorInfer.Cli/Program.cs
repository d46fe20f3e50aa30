using System.CommandLine;
using ActorInfer.Cli;
using ActorInfer.Cli.Commands;

var root = new RootCommand("ActorInfer: offloading LLM inference with a planned policy, on actors.");
foreach (var command in CommandCatalog.All())
    root.Subcommands.Add(command);

return CliRunner.Run(root, args);
