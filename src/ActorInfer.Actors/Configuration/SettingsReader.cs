using System.Globalization;
using ActorInfer.Planning;
using Akka.Configuration;

namespace ActorInfer.Actors.Configuration;

/// <summary>
/// Typed reads of one HOCON config that fail with a <see cref="SettingsException"/> naming the key, never with Akka's
/// own exception: a node refuses a bad value with the path the user wrote. Where a config is a part of the whole (a
/// tenant, an entry of `actorinfer.models`), <c>name</c> is the full path the error names instead of the relative key.
/// </summary>
internal sealed class SettingsReader(Config config)
{
    public bool Has(string key) => config.HasPath(key);

    public long Long(string key, string name) =>
        long.TryParse(String(key, name), CultureInfo.InvariantCulture, out var v)
            ? v
            : throw new SettingsException(name, $"'{String(key, name)}' is not an integer");

    public bool Bool(string key, string? name = null)
    {
        var s = (name is null ? String(key) : String(key, name)).Trim().ToLowerInvariant();
        return s switch
        {
            "on" or "true" or "yes" => true,
            "off" or "false" or "no" => false,
            _ => throw new SettingsException(name ?? key, $"'{s}' is not a boolean (on/off, true/false)"),
        };
    }

    public int Int(string key, string? name = null)
    {
        var s = name is null ? String(key) : String(key, name);
        return int.TryParse(s, CultureInfo.InvariantCulture, out var v)
            ? v
            : throw new SettingsException(name ?? key, $"'{s}' is not an integer");
    }

    public int PositiveInt(string key, string name)
    {
        var v = Int(key, name);
        return v > 0 ? v : throw new SettingsException(name, $"'{v}' is not a positive integer");
    }

    public int NonNegativeInt(string key)
    {
        var v = Int(key);
        return v >= 0 ? v : throw new SettingsException(key, $"'{v}' is negative");
    }

    public int IntBetween(string key, int least, int most)
    {
        var v = Int(key);
        return v >= least && v <= most ? v : throw new SettingsException(key, $"'{v}' is not between {least} and {most}");
    }

    public IReadOnlyList<string> StringList(string key, string name)
    {
        var value = config.GetValue(key);
        if (value is null || value.IsObject()) throw new SettingsException(name, "must be a list of strings ([\"...\"])");
        // An empty list is not an array to Akka's HoconValue, only to GetStringList.
        if (!value.IsArray() && value.IsString() && value.Values.Count > 0)
            throw new SettingsException(name, "must be a list of strings ([\"...\"])");
        try
        {
            return config.GetStringList(key)?.ToList() ?? [];
        }
        catch (Exception ex) when (ex is not SettingsException)
        {
            throw new SettingsException(name, $"must be a list of strings: {ex.Message}");
        }
    }

    public string String(string key, string name)
    {
        var value = config.GetValue(key);
        if (value is null || value.IsObject() || value.IsArray())
            throw new SettingsException(name, "must be a string");
        return value.GetString() ?? "";
    }

    public string String(string key)
    {
        var value = config.GetValue(key);
        if (value is null || value.IsObject() || value.IsArray())
            throw new SettingsException(key, "must be a string");
        return value.GetString() ?? "";
    }

    public string NonEmptyString(string key)
    {
        var s = String(key);
        return s.Trim().Length > 0 ? s : throw new SettingsException(key, "must not be empty");
    }

    public string OneOf(string key, params string[] allowed)
    {
        var s = String(key);
        return allowed.Contains(s) ? s : throw new SettingsException(key, $"'{s}' is not one of {string.Join(", ", allowed)}");
    }

    public long Long(string key) =>
        long.TryParse(String(key), CultureInfo.InvariantCulture, out var v)
            ? v
            : throw new SettingsException(key, $"'{String(key)}' is not an integer");

    public int PositiveInt(string key) =>
        int.TryParse(String(key), CultureInfo.InvariantCulture, out var v) && v > 0
            ? v
            : throw new SettingsException(key, $"'{String(key)}' is not a positive integer");

    public long Bytes(string key) =>
        ByteSize.TryParse(String(key), out var v, out var problem) ? v : throw new SettingsException(key, problem);

    /// <summary>A tier budget: "auto" (null, follow telemetry) or a byte size.</summary>
    public long? Budget(string key) => String(key) == "auto" ? null : Bytes(key);

    public TimeSpan Duration(string key)
    {
        String(key);
        TimeSpan span;
        try
        {
            span = config.GetTimeSpan(key, null, allowInfinite: false);
        }
        catch (Exception ex)
        {
            throw new SettingsException(key, $"'{String(key)}' is not a duration (e.g. 200ms, 2s): {ex.Message}");
        }
        return span > TimeSpan.Zero ? span : throw new SettingsException(key, "must be longer than zero");
    }
}
