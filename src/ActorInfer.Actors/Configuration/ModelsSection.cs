using ActorInfer.Planning;
using Akka.Configuration;
using Akka.Configuration.Hocon;

namespace ActorInfer.Actors.Configuration;

/// <summary>
/// `actorinfer.models`, the models a node of several models serves. Its entries are user-named list items, not keys
/// of reference.conf, so the key check cannot vouch for them: each entry is checked here (known keys, a loadable
/// model, a unique name, floor below ceiling), with errors naming the entry by index.
/// </summary>
internal static class ModelsSection
{
    private const string Key = "actorinfer.models";

    private static readonly string[] ModelKeys = ["name", "model", "priority", "memory-floor", "memory-ceiling", "weights-seed", "static-share"];

    /// <summary>The listed models in order (empty when the node serves `actorinfer.model` alone).</summary>
    /// <param name="r">The whole configuration, for the node's `weights-seed` an entry without its own inherits.</param>
    public static IReadOnlyList<ServedModelSettings> Read(Config config, SettingsReader r, Func<string, string?> modelProblem, string baseDir)
    {
        var value = config.GetValue(Key);
        if (value is null) return [];
        if (value.IsObject()) throw new SettingsException(Key, "must be a list of models ([{ name = ..., model = ... }, ...])");
        if (!value.IsArray()) return value.IsString() && value.Values.Count > 0
            ? throw new SettingsException(Key, "must be a list of models ([{ name = ..., model = ... }, ...])")
            : [];
        var models = new List<ServedModelSettings>();
        var items = value.GetArray();
        for (var i = 0; i < items.Count; i++)
        {
            var at = $"{Key}[{i}]";
            if (!items[i].IsObject()) throw new SettingsException(at, "must be a section ({ name = ..., model = ..., priority = ... })");
            foreach (var name in items[i].GetObject().Items.Keys)
                if (!ModelKeys.Contains(name))
                    throw new SettingsException($"{at}.{name}", $"unknown key (a model takes {string.Join(", ", ModelKeys)})");
            var entry = new SettingsReader(new Config(new HoconRoot(items[i])));
            string Text(string k, string fallback) => entry.Has(k) ? entry.String(k, $"{at}.{k}").Trim() : fallback;
            var modelName = Text("name", "");
            if (modelName.Length == 0) throw new SettingsException($"{at}.name", "is required: the id requests give as `model`");
            if (models.Any(m => m.Name == modelName)) throw new SettingsException($"{at}.name", $"'{modelName}' names two models");
            var model = Text("model", "");
            if (model.Length == 0) throw new SettingsException($"{at}.model", "is required: a checkpoint directory or a model size name");
            var path = SettingsLoader.LooksLikePath(model) ? Path.GetFullPath(model, baseDir) : model;
            if (modelProblem(path) is { } problem) throw new SettingsException($"{at}.model", problem);
            long? Bound(string k)
            {
                var text = Text(k, "auto");
                if (text == "auto") return null;
                return ByteSize.TryParse(text, out var bytes, out var why) ? bytes : throw new SettingsException($"{at}.{k}", why);
            }
            var floor = Bound("memory-floor");
            var ceiling = Bound("memory-ceiling");
            if (floor is { } f && ceiling is { } c && f > c)
                throw new SettingsException($"{at}.memory-floor", $"{ByteSize.FormatBinary(f)} is above memory-ceiling ({ByteSize.FormatBinary(c)})");
            var priority = entry.Has("priority") ? entry.Int("priority", $"{at}.priority") : 0;
            var seed = entry.Has("weights-seed") ? entry.Long("weights-seed", $"{at}.weights-seed") : r.Long("actorinfer.weights-seed");
            var fixedShare = entry.Has("static-share") && entry.Bool("static-share", $"{at}.static-share");
            models.Add(new ServedModelSettings(modelName, path, priority, floor, ceiling, seed, fixedShare));
        }
        return models;
    }
}
