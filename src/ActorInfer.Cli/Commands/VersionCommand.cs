using System.CommandLine;
using System.Reflection;

namespace ActorInfer.Cli.Commands;

public static class VersionCommand
{
    /// <summary>The one version string, as `--version` prints it: the informational version (with the source revision when built from git).</summary>
    public static string Text { get; } =
        typeof(VersionCommand).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(VersionCommand).Assembly.GetName().Version?.ToString() ?? "unknown";

    public static Command Create()
    {
        var command = new Command("version", "Print the program's version and whether TorchSharp and CUDA load.");
        command.SetAction(_ =>
        {
            Console.WriteLine($"actorinfer {Text}");
            Console.WriteLine($"torch: cuda available = {TorchSharp.torch.cuda.is_available()}");
            var onThread = 0;
            var thread = new Thread(() => onThread = TorchSharp.torch.get_num_threads());
            thread.Start();
            thread.Join();
            Console.WriteLine($"torch: intra-op threads {TorchSharp.torch.get_num_threads()} on the main thread, {onThread} on a new thread");
            if (TorchSharp.torch.cuda.is_available())
            {
                foreach (var line in ActorInfer.Runtime.Cuda.CudaSelfTest.Run()) Console.WriteLine(line);
                foreach (var line in ActorInfer.Model.Layers.InvariantAttentionCheck.Run()) Console.WriteLine(line);
                foreach (var line in ActorInfer.Model.Layers.FusedKernelsCheck.Run()) Console.WriteLine(line);
            }
            return 0;
        });
        return command;
    }
}
