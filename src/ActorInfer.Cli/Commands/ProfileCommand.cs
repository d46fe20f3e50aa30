using ActorInfer.Actors.Planner;
using System.CommandLine;
using ActorInfer.Cli.Planning;
using ActorInfer.Runtime.Profiling;
using ActorInfer.Planning;

namespace ActorInfer.Cli.Commands;

/// <summary>`actorinfer profile`: measures this machine's rates and writes a hardware profile for the planner.</summary>
public static class ProfileCommand
{
    public static Command Create()
    {
        var command = new Command("profile", "Measure this machine's copy, disk and compute rates and write a hardware profile (JSON) for the planner.");
        var device = new Option<string>("--device") { Description = "cuda or cpu (default: cuda when available)." };
        device.OneOf("cpu", "cuda");
        var diskDir = new Option<string?>("--disk-dir") { Description = "Folder for the disk tier's measurement (default: the system's temp folder)." };
        var output = new Option<FileInfo>("--output") { Description = "Profile file to write.", Required = true };
        var name = new Option<string?>("--name") { Description = "Profile name (default: the output file's name)." };
        var model = new Option<string?>("--model")
        {
            Description = $"Time CPU attention at this model's hidden size (an OPT name or a directory with config.json; default: OPT-6.7B's hidden {AttentionShape.Default.HiddenSize}).",
        };
        foreach (var o in new Option[] { device, diskDir, output, name, model }) command.Options.Add(o);
        command.SetAction(parse =>
        {
            var dev = Devices.Resolve(parse.GetValue(device) ?? (TorchSharp.torch.cuda.is_available() ? "cuda" : "cpu"));
            var folder = parse.GetValue(diskDir) ?? Path.GetTempPath();
            Directory.CreateDirectory(folder);
            var file = parse.GetValue(output)!;
            if (file.Directory is { Exists: false } d) throw new CliException($"output folder does not exist: {d.FullName}");
            var profileName = parse.GetValue(name) ?? Path.GetFileNameWithoutExtension(file.Name);
            AttentionShape? attention = null;
            if (parse.GetValue(model) is { } modelName)
            {
                var spec = ModelSpecMapper.Resolve(modelName);
                attention = new AttentionShape(spec.HiddenSize, spec.NumHeads);
            }
            var profile = new HardwareProber(dev, folder, line => Console.Error.WriteLine($"profile: {line}"), attention).Measure(profileName);
            HardwareProfileJson.Save(profile, file.FullName);
            Console.WriteLine($"wrote {file.FullName}");
            return 0;
        });
        return command;
    }
}
