using System.CommandLine;
using System.Runtime.InteropServices;
using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Node;
using Akka.Configuration;

namespace ActorInfer.Cli.Commands;

/// <summary>
/// `actorinfer node`: starts a node from HOCON (the file over each assembly's reference.conf, environment
/// variables over the file, flags over both) and runs until SIGINT or SIGTERM. Work comes in through the data
/// folder: jobs as `inbox/JOB.jsonl`, results in `results/JOB.jsonl`, operator commands in `control/`.
/// </summary>
public static class NodeCommand
{
    public static Command Create()
    {
        var command = new Command("node", "Start a node from a HOCON file; jobs are read from DATA/inbox/*.jsonl, results written to DATA/results/.");
        var config = new Option<string>("--config") { Description = "The node's HOCON file (see hocon/).", Required = true };
        var model = new Option<string?>("--model") { Description = "Overrides actorinfer.model: a checkpoint directory or an OPT size name." };
        var dataDir = new Option<string?>("--data-dir") { Description = "Overrides actorinfer.data-dir." };
        command.Options.Add(config);
        command.Options.Add(model);
        command.Options.Add(dataDir);
        command.SetAction(parse => Run(parse.GetValue(config)!, parse.GetValue(model), parse.GetValue(dataDir)));
        return command;
    }

    /// <summary>Validates every setting into a record first: a bad key is refused before anything starts.</summary>
    public static (ActorInferSettings Settings, Config File) LoadSettings(string configPath, string? model, string? dataDir,
        IReadOnlyDictionary<string, string?> environment)
    {
        try
        {
            var file = SettingsLoader.ParseFile(configPath);
            var flags = SettingsLoader.Overrides([new("actorinfer.model", model), new("actorinfer.data-dir", dataDir)]);
            var settings = SettingsLoader.Load([flags, SettingsLoader.FromEnvironment(environment), file], NodeModel.Problem);
            return (settings, file);
        }
        catch (SettingsException ex)
        {
            throw new CliException($"configuration refused: {ex.Message}", 2);
        }
    }

    private static int Run(string configPath, string? model, string? dataDir)
    {
        var (settings, file) = LoadSettings(configPath, model, dataDir, SettingsLoader.ProcessEnvironment());
        ActorInferNode node;
        try
        {
            // The file's `akka` section (if any) tunes the actor system; its `actorinfer` section was read above.
            node = ActorInferNode.Start(settings, file);
        }
        catch (SettingsException ex)
        {
            throw new CliException($"configuration refused: {ex.Message}", 2);
        }
        Console.WriteLine($"node started: model {settings.Model}, device {settings.Device}, data {settings.DataDir}");
        Console.WriteLine($"node: drop jobs into {settings.InboxDir}, results appear in {settings.ResultsDir}");

        using var stop = new ManualResetEventSlim();
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Set(); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Set(); });
        WaitHandle.WaitAny([stop.WaitHandle, ((IAsyncResult)node.WhenTerminated).AsyncWaitHandle]);
        node.DisposeAsync().AsTask().GetAwaiter().GetResult();
        Console.WriteLine("node stopped");
        return 0;
    }
}
