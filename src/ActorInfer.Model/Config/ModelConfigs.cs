namespace ActorInfer.Model.Config;

/// <summary>Where a <see cref="ModelConfig"/> comes from: a config.json of any supported family, or a published size name.</summary>
public static class ModelConfigs
{
    /// <summary>Every named size, OPT's first.</summary>
    public static IReadOnlyList<string> NamedSizes { get; } = [.. OptConfigs.NamedSizes, .. LlamaConfigs.Published.Select(c => c.Name)];

    /// <summary>The model_type values config.json may name.</summary>
    public static IReadOnlyList<string> ModelTypes { get; } = ["opt", .. LlamaConfigs.Architectures.Values];

    public static bool IsNamedSize(string name) => TryNamed(name) is not null;

    public static ModelConfig Named(string name) =>
        TryNamed(name ?? throw new ArgumentNullException(nameof(name))) ?? throw new ArgumentException(
            $"unknown model size '{name}'; known sizes: {string.Join(", ", NamedSizes)}", nameof(name));

    /// <summary>A named size, a directory holding <c>config.json</c>, or a <c>config.json</c> path.</summary>
    public static ModelConfig Resolve(string nameOrPath)
    {
        ArgumentNullException.ThrowIfNull(nameOrPath);
        if (Directory.Exists(nameOrPath))
        {
            var file = Path.Combine(nameOrPath, "config.json");
            if (!File.Exists(file))
                throw new FileNotFoundException($"directory {nameOrPath} holds no config.json", file);
            return FromJson(file);
        }
        if (File.Exists(nameOrPath)) return FromJson(nameOrPath);
        return TryNamed(nameOrPath) ?? throw new ArgumentException(
            $"'{nameOrPath}' is neither a model directory with a config.json nor a known model size " +
            $"({string.Join(", ", NamedSizes)})", nameof(nameOrPath));
    }

    /// <summary>Parses a config.json, choosing the family by model_type (or architectures).</summary>
    public static ModelConfig FromJson(string path) => ConfigReader.ReadFile<ModelConfig>(path, (json, file) =>
    {
        if (json.OptionalString("model_type") == "opt") return OptConfigs.Parse(json, file);
        if (LlamaConfigs.Family(json) is not null) return LlamaConfigs.Parse(json, file);
        var modelType = json.OptionalString("model_type");
        throw json.Error($"has model_type '{modelType ?? "(absent)"}'; supported are {string.Join(", ", ModelTypes)}");
    });

    private static ModelConfig? TryNamed(string name) => (ModelConfig?)LlamaConfigs.TryNamed(name) ?? OptConfigs.TryNamed(name);
}
