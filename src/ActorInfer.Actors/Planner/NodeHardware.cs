using ActorInfer.Actors.Configuration;
using ActorInfer.Planning;
using ActorInfer.Runtime.Profiling;
using static TorchSharp.torch;

namespace ActorInfer.Actors.Planner;

/// <summary>The hardware profile a node's planner ranks policies with, and where it came from.</summary>
public sealed record NodeHardware(HardwareProfile Profile, string Source)
{
    /// <summary>
    /// `actorinfer.planner.hardware`: "auto" on a GPU node reads the profile the node measured on its first start
    /// (data-dir/hardware.json), measuring it now when there is none; on a CPU node every tensor stays in host memory,
    /// so only the block geometry is ranked, with the built-in t4-flexgen rates (and it says so). A name or a file is
    /// taken as given.
    /// </summary>
    public static NodeHardware Resolve(ActorInferSettings settings, Action<string> log, AttentionShape? attention = null)
    {
        var wanted = settings.Planner.Hardware;
        if (wanted != "auto")
        {
            try
            {
                var profile = HardwareProfiles.Resolve(wanted);
                return new NodeHardware(profile, File.Exists(wanted) ? $"file {wanted}" : "built-in");
            }
            catch (Exception ex) when (ex is ArgumentException or FormatException or IOException or System.Text.Json.JsonException)
            {
                throw new SettingsException("actorinfer.planner.hardware", ex.Message);
            }
        }
        if (!settings.IsCuda)
            return new NodeHardware(HardwareProfiles.T4FlexGen,
                "built-in (a CPU node keeps every tensor in host memory; only the block geometry is ranked by these rates)");
        var path = settings.HardwareProfilePath;
        if (File.Exists(path))
            return new NodeHardware(HardwareProfileJson.Load(path), $"measured on this machine ({path})");
        log($"measuring this machine's hardware profile for the planner (once; kept in {path})");
        var measured = new HardwareProber(new Device(settings.Device), settings.DataDir, line => log($"profile: {line}"), attention).Measure("measured");
        HardwareProfileJson.Save(measured, path);
        return new NodeHardware(measured, $"measured on this machine ({path})");
    }
}
