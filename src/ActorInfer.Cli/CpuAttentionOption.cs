using System.CommandLine;

namespace ActorInfer.Cli;

/// <summary>
/// `--cpu-attention on|off|auto`, spelled, typed and defaulted the same on every command that takes it (`plan`,
/// `bench`, `generate`): attention over a CPU-resident cache on the CPU (FlexGen's CPU delegation). On by default, as
/// FlexGen recommends it for a cache off the GPU; auto lets the planner try both.
/// </summary>
public static class CpuAttentionOption
{
    public static Option<string> Create()
    {
        var option = new Option<string>("--cpu-attention")
        {
            Description = "Attention over a CPU-resident cache on the CPU (FlexGen's CPU delegation): on (default), off, or auto (the planner tries both; with a search only).",
            DefaultValueFactory = _ => "on",
        };
        option.OneOf("on", "off", "auto");
        return option;
    }

    /// <summary>true for on, false for off, null for auto.</summary>
    public static bool? Read(string value) => value switch { "on" => true, "off" => false, _ => null };
}
