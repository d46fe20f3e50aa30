namespace ActorInfer.Actors.Configuration;

/// <summary>A configuration a node refuses to start with; <see cref="Key"/> is the full HOCON path at fault.</summary>
public sealed class SettingsException(string key, string message) : Exception($"{key}: {message}")
{
    public string Key { get; } = key;
}
