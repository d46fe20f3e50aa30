using System.CommandLine;
using ActorInfer.Cli;
using ActorInfer.Actors.Diagnostics;
using ActorInfer.Cli.Commands;

// Before any tensor reaches a CUDA device: the caching allocator reads its configuration once.
ActorInfer.Runtime.Cuda.AllocatorSettings.Apply();

var root = new RootCommand("ActorInfer: offloading LLM inference with a planned policy, on actors.");
foreach (var command in CommandCatalog.All())
    root.Subcommands.Add(command);

var status = CliRunner.Run(root, args);
// libtorch's exit handlers run once Main returns: no background tensor work may run beside them.
AheadCompilation.Stop();
return status;
