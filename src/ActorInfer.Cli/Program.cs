using System.CommandLine;
using ActorInfer.Cli;
using ActorInfer.Cli.Commands;

// Before any tensor reaches a CUDA device: the caching allocator reads its configuration once.
ActorInfer.Runtime.Cuda.AllocatorSettings.Apply();

var root = new RootCommand("ActorInfer: offloading LLM inference with a planned policy, on actors.");
foreach (var command in CommandCatalog.All())
    root.Subcommands.Add(command);

return CliRunner.Run(root, args);
