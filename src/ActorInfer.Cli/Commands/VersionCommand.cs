using System.CommandLine;

namespace ActorInfer.Cli.Commands;

public static class VersionCommand
{
    public static Command Create()
    {
        var command = new Command("version", "Print the program's version and whether TorchSharp and CUDA load.");
        command.SetAction(_ =>
        {
            var version = typeof(VersionCommand).Assembly.GetName().Version;
            Console.WriteLine($"actorinfer {version}");
            Console.WriteLine($"torch: cuda available = {TorchSharp.torch.cuda.is_available()}");
            var onThread = 0;
            var thread = new Thread(() => onThread = TorchSharp.torch.get_num_threads());
            thread.Start();
            thread.Join();
            Console.WriteLine($"torch: intra-op threads {TorchSharp.torch.get_num_threads()} on the main thread, {onThread} on a new thread");
            if (TorchSharp.torch.cuda.is_available())
                foreach (var line in ActorInfer.Runtime.Cuda.CudaSelfTest.Run()) Console.WriteLine(line);
            return 0;
        });
        return command;
    }
}
