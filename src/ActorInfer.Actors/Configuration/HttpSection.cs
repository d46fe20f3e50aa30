using Akka.Configuration;

namespace ActorInfer.Actors.Configuration;

/// <summary>
/// `actorinfer.http`: the listener, its connection limits and its tenants. Tenant sections are named by the user and
/// take their unset keys from `tenant-defaults`; an API key hash may belong to one tenant only, so a key always names
/// whose quota and priority a request gets.
/// </summary>
internal static class HttpSection
{
    private const string Http = "actorinfer.http";

    /// <param name="modelPath">The model as loaded (a folder or a size name); its last name is the served name when none is set.</param>
    public static HttpSettings Read(Config config, SettingsReader r, string modelPath)
    {
        var port = r.Int($"{Http}.port");
        if (port is < 0 or > 65535) throw new SettingsException($"{Http}.port", $"{port} is not a port (0-65535; 0 picks a free one)");
        var servedName = r.String($"{Http}.served-model-name").Trim();
        if (servedName.Length == 0) servedName = Path.GetFileName(modelPath.TrimEnd('/', '\\'));
        var tenants = new List<TenantSettings>();
        IEnumerable<string> names = config.GetValue($"{Http}.tenants") is { } t && t.IsObject() ? t.GetObject().Items.Keys : [];
        var seen = new Dictionary<string, string>();
        foreach (var name in names.Order(StringComparer.Ordinal))
        {
            var tenant = config.GetConfig($"{Http}.tenants.{name}").WithFallback(config.GetConfig($"{Http}.tenant-defaults"));
            var tr = new SettingsReader(tenant);
            var hashes = KeyHashes(tr, "api-key-hashes", $"{Http}.tenants.{name}.api-key-hashes");
            foreach (var h in hashes)
                if (!seen.TryAdd(h, name))
                    throw new SettingsException($"{Http}.tenants.{name}.api-key-hashes", $"a key hash is also a key of tenant '{seen[h]}'");
            tenants.Add(new TenantSettings(name, hashes, tr.Int("priority", $"{Http}.tenants.{name}.priority"),
                tr.PositiveInt("max-queued-requests", $"{Http}.tenants.{name}.max-queued-requests"),
                tr.Int("max-priority", $"{Http}.tenants.{name}.max-priority")));
        }
        return new HttpSettings(
            r.Bool($"{Http}.enabled"),
            r.NonEmptyString($"{Http}.host"),
            port,
            r.Bytes($"{Http}.max-body-bytes"),
            r.Bytes($"{Http}.max-job-body-bytes"),
            servedName,
            r.Duration($"{Http}.retry-after"),
            r.Duration($"{Http}.completion-timeout"),
            r.NonNegativeInt($"{Http}.max-invalid-job-lines"),
            new ConnectionSettings(r.PositiveInt($"{Http}.connections.max", $"{Http}.connections.max"),
                r.Duration($"{Http}.connections.keep-alive-timeout"), r.Duration($"{Http}.connections.request-headers-timeout"),
                r.PositiveInt($"{Http}.connections.file-handle-limit", $"{Http}.connections.file-handle-limit"),
                r.PositiveInt($"{Http}.connections.max-unauthenticated", $"{Http}.connections.max-unauthenticated")),
            KeyHashes(r, $"{Http}.admin-key-hashes", $"{Http}.admin-key-hashes"),
            tenants);
    }

    /// <summary>Key hashes as compared (trimmed, lower case); a value that is not a SHA-256 hash is refused, as it may be a key.</summary>
    private static IReadOnlyList<string> KeyHashes(SettingsReader r, string key, string fullKey)
    {
        var list = r.StringList(key, fullKey).Select(h => h.Trim().ToLowerInvariant()).ToList();
        foreach (var h in list)
            if (h.Length != 64 || !h.All(char.IsAsciiHexDigit))
                throw new SettingsException(fullKey, "holds SHA-256 hashes of keys (64 hex digits), never the keys themselves");
        return list;
    }
}
