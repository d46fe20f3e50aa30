using ActorInfer.Planning;
using System.Reflection;
using System.Text.Json;
using Akka.Configuration;
using Address = Akka.Actor.Address;
using Akka.Configuration.Hocon;

namespace ActorInfer.Actors.Configuration;

/// <summary>
/// Reads the `actorinfer` section: a node's file over this assembly's reference.conf, environment variables
/// over the file, command-line flags over both. Every key is checked (known, right type, in range) before a
/// settings record exists.
/// </summary>
public static class SettingsLoader
{
    public const string Section = "actorinfer";

    /// <summary>Environment variables that override single keys (a deployment sets these instead of editing files).</summary>
    public static IReadOnlyDictionary<string, string> EnvironmentKeys { get; } = new Dictionary<string, string>
    {
        ["ACTORINFER_MODEL"] = "actorinfer.model",
        ["ACTORINFER_DEVICE"] = "actorinfer.device",
        ["ACTORINFER_DTYPE"] = "actorinfer.dtype",
        ["ACTORINFER_DATA_DIR"] = "actorinfer.data-dir",
        ["ACTORINFER_GPU_BUDGET"] = "actorinfer.memory.gpu-budget",
        ["ACTORINFER_CPU_BUDGET"] = "actorinfer.memory.cpu-budget",
        ["ACTORINFER_PERSISTENCE"] = "actorinfer.persistence.provider",
        ["ACTORINFER_POSTGRES_CONNECTION"] = "actorinfer.persistence.postgresql.connection-string",
    };

    private static readonly Lazy<Config> LazyReference = new(() =>
    {
        using var stream = typeof(SettingsLoader).Assembly.GetManifestResourceStream("ActorInfer.Actors.reference.conf")
            ?? throw new InvalidOperationException("ActorInfer.Actors.reference.conf is not embedded");
        using var reader = new StreamReader(stream);
        return ConfigurationFactory.ParseString(reader.ReadToEnd());
    });

    /// <summary>This assembly's defaults (embedded reference.conf).</summary>
    public static Config Reference => LazyReference.Value;

    /// <summary>Parses a node's HOCON file; a syntax error names the file.</summary>
    public static Config ParseFile(string path)
    {
        if (!File.Exists(path)) throw new SettingsException("--config", $"the file '{path}' does not exist");
        try
        {
            return ConfigurationFactory.ParseString(File.ReadAllText(path));
        }
        catch (Exception ex) when (ex is not SettingsException)
        {
            throw new SettingsException("--config", $"'{path}' is not valid HOCON: {ex.Message}");
        }
    }

    /// <summary>HOCON that sets the given keys (full paths) to string values; null values are left out.</summary>
    public static Config Overrides(IEnumerable<KeyValuePair<string, string?>> values)
    {
        var lines = values.Where(kv => kv.Value is not null).Select(kv => $"{kv.Key} = {JsonSerializer.Serialize(kv.Value)}");
        return ConfigurationFactory.ParseString(string.Join("\n", lines));
    }

    public static Config FromEnvironment(IReadOnlyDictionary<string, string?> environment) =>
        Overrides(EnvironmentKeys.Select(kv => new KeyValuePair<string, string?>(kv.Value, environment.GetValueOrDefault(kv.Key))));

    public static IReadOnlyDictionary<string, string?> ProcessEnvironment() =>
        EnvironmentKeys.Keys.ToDictionary(k => k, Environment.GetEnvironmentVariable);

    /// <summary>Validates the layered configuration (highest precedence first) into settings.</summary>
    /// <param name="modelExists">Whether a model value names something loadable; returns the reason when not.</param>
    public static ActorInferSettings Load(IEnumerable<Config> layers, Func<string, string?> modelProblem, string? baseDirectory = null)
    {
        var user = Config.Empty;
        foreach (var layer in layers) user = user.WithFallback(layer);
        CheckKeys(user);
        var config = user.WithFallback(Reference);
        var baseDir = baseDirectory ?? Directory.GetCurrentDirectory();
        var r = new Reader(config);

        var models = ReadModels(config, r, modelProblem, baseDir);
        if (models.Count > 0 && user.HasPath("actorinfer.model"))
            throw new SettingsException("actorinfer.model", "each entry of actorinfer.models names its own model: leave actorinfer.model (and --model) out");
        var model = r.NonEmptyString("actorinfer.model");
        var modelPath = models.Count > 0 ? models[0].Model : LooksLikePath(model) ? Path.GetFullPath(model, baseDir) : model;
        if (models.Count == 0 && modelProblem(modelPath) is { } problem) throw new SettingsException("actorinfer.model", problem);

        var device = r.NonEmptyString("actorinfer.device");
        if (device != "cpu" && device != "cuda" && !(device.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(device[5..], out var n) && n >= 0))
            throw new SettingsException("actorinfer.device", $"'{device}' is not cpu, cuda or cuda:N");
        var dtype = r.OneOf("actorinfer.dtype", "float32", "float16", "bfloat16");

        var memory = new MemorySettings(
            r.Budget("actorinfer.memory.gpu-budget"),
            r.Budget("actorinfer.memory.cpu-budget"),
            r.Budget("actorinfer.memory.disk-budget"),
            r.Duration("actorinfer.memory.telemetry-interval"),
            r.Bytes("actorinfer.memory.telemetry-change-threshold"));
        var scheduler = new SchedulerSettings(
            r.PositiveInt("actorinfer.scheduler.max-gpu-batch-size"),
            r.PositiveInt("actorinfer.scheduler.max-gpu-batches"),
            r.Duration("actorinfer.scheduler.max-wait-for-memory"));
        var control = new ControlSettings(r.Duration("actorinfer.control.poll-interval"));
        var provider = r.OneOf("actorinfer.persistence.provider", "sqlite", "postgresql") == "sqlite"
            ? PersistenceProvider.Sqlite
            : PersistenceProvider.PostgreSql;
        var postgres = r.String("actorinfer.persistence.postgresql.connection-string");
        if (provider == PersistenceProvider.PostgreSql && postgres.Length == 0)
            throw new SettingsException("actorinfer.persistence.postgresql.connection-string", "is required when persistence.provider = postgresql");
        var persistence = new PersistenceSettings(
            provider,
            r.NonEmptyString("actorinfer.persistence.sqlite.journal-file"),
            r.NonEmptyString("actorinfer.persistence.sqlite.snapshot-file"),
            postgres,
            r.NonEmptyString("actorinfer.persistence.postgresql.schema"),
            r.PositiveInt("actorinfer.persistence.snapshot-every"));

        var threads = r.PositiveInt("actorinfer.dispatchers.tensor.dedicated-thread-pool.thread-count");
        if (threads != 1)
            throw new SettingsException("actorinfer.dispatchers.tensor.dedicated-thread-pool.thread-count",
                "must be 1: tensor work must stay on one thread (DisposeScope is thread-static, CUDA runs in issue order)");

        var cluster = ReadCluster(r);
        var roles = ReadRoles(r, cluster);
        if (models.Count > 0 && roles != NodeRoles.Both)
            throw new SettingsException("actorinfer.models", $"several models are served by a node alone (roles = [gateway, worker]), not by a '{roles}'");
        var http = ReadHttp(config, r, modelPath);
        if (models.Count > 0)
        {
            if (r.String("actorinfer.http.served-model-name").Trim().Length > 0)
                throw new SettingsException("actorinfer.http.served-model-name", "is each model's `name` when actorinfer.models lists several models: leave it out");
            http = http with { ServedModelName = models[0].Name };
        }
        return new ActorInferSettings(
            modelPath, device, dtype, Path.GetFullPath(r.NonEmptyString("actorinfer.data-dir"), baseDir),
            models.Count > 0 ? models[0].WeightsSeed : r.Long("actorinfer.weights-seed"), r.Long("actorinfer.request-seed"),
            memory, scheduler, control, persistence, http)
        {
            Models = models,
            Arbiter = new ArbiterSettings(r.Duration("actorinfer.arbiter.poll-interval"), r.Bytes("actorinfer.arbiter.change-threshold"),
                r.Duration("actorinfer.arbiter.release-after"), NonNegativeInt(r, "actorinfer.arbiter.reserve-sequences")),
            Planner = ReadPlanner(r, baseDir),
            Cluster = cluster,
            Roles = roles,
            Jobs = new JobSettings(r.Duration("actorinfer.jobs.retention")),
        };
    }

    private static readonly string[] ModelKeys = ["name", "model", "priority", "memory-floor", "memory-ceiling", "weights-seed", "static-share"];

    /// <summary>`actorinfer.models`: each entry checked (known keys, a loadable model, a unique name, floor below ceiling).</summary>
    private static IReadOnlyList<ServedModelSettings> ReadModels(Config config, Reader r, Func<string, string?> modelProblem, string baseDir)
    {
        const string key = "actorinfer.models";
        var value = config.GetValue(key);
        if (value is null) return [];
        if (value.IsObject()) throw new SettingsException(key, "must be a list of models ([{ name = ..., model = ... }, ...])");
        if (!value.IsArray()) return value.IsString() && value.Values.Count > 0
            ? throw new SettingsException(key, "must be a list of models ([{ name = ..., model = ... }, ...])")
            : [];
        var models = new List<ServedModelSettings>();
        var items = value.GetArray();
        for (var i = 0; i < items.Count; i++)
        {
            var at = $"{key}[{i}]";
            if (!items[i].IsObject()) throw new SettingsException(at, "must be a section ({ name = ..., model = ..., priority = ... })");
            foreach (var name in items[i].GetObject().Items.Keys)
                if (!ModelKeys.Contains(name))
                    throw new SettingsException($"{at}.{name}", $"unknown key (a model takes {string.Join(", ", ModelKeys)})");
            var entry = new Reader(new Config(new HoconRoot(items[i])));
            string Text(string k, string fallback) => entry.Has(k) ? entry.String(k, $"{at}.{k}").Trim() : fallback;
            var modelName = Text("name", "");
            if (modelName.Length == 0) throw new SettingsException($"{at}.name", "is required: the id requests give as `model`");
            if (models.Any(m => m.Name == modelName)) throw new SettingsException($"{at}.name", $"'{modelName}' names two models");
            var model = Text("model", "");
            if (model.Length == 0) throw new SettingsException($"{at}.model", "is required: a checkpoint directory or a model size name");
            var path = LooksLikePath(model) ? Path.GetFullPath(model, baseDir) : model;
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

    private static NodeRoles ReadRoles(Reader r, ClusterSettings cluster)
    {
        const string key = "actorinfer.roles";
        var names = r.StringList(key, key);
        foreach (var name in names)
            if (name is not ("gateway" or "worker"))
                throw new SettingsException(key, $"'{name}' is not a role (gateway, worker)");
        var roles = new NodeRoles(names.Contains("gateway"), names.Contains("worker"));
        if (!roles.Gateway && !roles.Worker) throw new SettingsException(key, "names no role (gateway, worker, or both)");
        if (roles != NodeRoles.Both && !cluster.Enabled)
            throw new SettingsException(key, $"'{roles}' alone needs actorinfer.cluster.enabled = on (a gateway routes to the cluster's workers)");
        return roles;
    }

    private static ClusterSettings ReadCluster(Reader r)
    {
        const string cluster = "actorinfer.cluster";
        var port = r.Int($"{cluster}.port");
        if (port is < 0 or > 65535) throw new SettingsException($"{cluster}.port", $"{port} is not a port (0-65535; 0 picks a free one)");
        var seeds = r.StringList($"{cluster}.seed-nodes", $"{cluster}.seed-nodes");
        foreach (var seed in seeds)
        {
            Address address;
            try
            {
                address = Address.Parse(seed);
            }
            catch (Exception ex) when (ex is UriFormatException or ArgumentException or FormatException)
            {
                throw new SettingsException($"{cluster}.seed-nodes", $"'{seed}' is not an address like akka.tcp://actorinfer@127.0.0.1:4053");
            }
            if (address.Protocol != "akka.tcp" || address.System != "actorinfer" || address.Host is null || address.Port is null or <= 0)
                throw new SettingsException($"{cluster}.seed-nodes", $"'{seed}' is not an address like akka.tcp://actorinfer@127.0.0.1:4053");
        }
        return new ClusterSettings(r.Bool($"{cluster}.enabled"), r.NonEmptyString($"{cluster}.hostname"), port, seeds,
            r.Duration($"{cluster}.acceptable-heartbeat-pause"), r.Duration($"{cluster}.stable-after"));
    }

    private static PlannerSettings ReadPlanner(Reader r, string baseDir)
    {
        const string planner = "actorinfer.planner";
        var hardware = r.NonEmptyString($"{planner}.hardware").Trim();
        // A profile file is read relative to the working directory, as the model is.
        if (LooksLikePath(hardware) || hardware.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            hardware = Path.GetFullPath(hardware, baseDir);
            if (!File.Exists(hardware)) throw new SettingsException($"{planner}.hardware", $"the profile file '{hardware}' does not exist");
        }
        var step = r.String($"{planner}.table-step");
        if (!double.TryParse(step, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var tableStep) ||
            tableStep <= 1.0 || tableStep > 2.0)
            throw new SettingsException($"{planner}.table-step", $"'{step}' is not a factor between 1 (exclusive) and 2, such as 1.02");
        return new PlannerSettings(hardware, r.PositiveInt($"{planner}.max-block-size"), r.Bool($"{planner}.compress-cache"),
            r.Bool($"{planner}.whole-context"), tableStep) { HeadroomHistory = NonNegativeInt(r, $"{planner}.headroom-history") };
    }

    private static HttpSettings ReadHttp(Config config, Reader r, string modelPath)
    {
        const string http = "actorinfer.http";
        var port = r.Int($"{http}.port");
        if (port is < 0 or > 65535) throw new SettingsException($"{http}.port", $"{port} is not a port (0-65535; 0 picks a free one)");
        var servedName = r.String($"{http}.served-model-name").Trim();
        if (servedName.Length == 0) servedName = Path.GetFileName(modelPath.TrimEnd('/', '\\'));
        var tenants = new List<TenantSettings>();
        IEnumerable<string> names = config.GetValue($"{http}.tenants") is { } t && t.IsObject() ? t.GetObject().Items.Keys : [];
        var seen = new Dictionary<string, string>();
        foreach (var name in names.Order(StringComparer.Ordinal))
        {
            var tenant = config.GetConfig($"{http}.tenants.{name}").WithFallback(config.GetConfig($"{http}.tenant-defaults"));
            var tr = new Reader(tenant);
            var hashes = KeyHashes(tr, "api-key-hashes", $"{http}.tenants.{name}.api-key-hashes");
            foreach (var h in hashes)
                if (!seen.TryAdd(h, name))
                    throw new SettingsException($"{http}.tenants.{name}.api-key-hashes", $"a key hash is also a key of tenant '{seen[h]}'");
            tenants.Add(new TenantSettings(name, hashes, tr.Int("priority", $"{http}.tenants.{name}.priority"),
                tr.PositiveInt("max-queued-requests", $"{http}.tenants.{name}.max-queued-requests"),
                tr.Int("max-priority", $"{http}.tenants.{name}.max-priority")));
        }
        return new HttpSettings(
            r.Bool($"{http}.enabled"),
            r.NonEmptyString($"{http}.host"),
            port,
            r.Bytes($"{http}.max-body-bytes"),
            r.Bytes($"{http}.max-job-body-bytes"),
            servedName,
            r.Duration($"{http}.retry-after"),
            r.Duration($"{http}.completion-timeout"),
            NonNegativeInt(r, $"{http}.max-invalid-job-lines"),
            new ConnectionSettings(r.PositiveInt($"{http}.connections.max", $"{http}.connections.max"),
                r.Duration($"{http}.connections.keep-alive-timeout"), r.Duration($"{http}.connections.request-headers-timeout"),
                r.PositiveInt($"{http}.connections.file-handle-limit", $"{http}.connections.file-handle-limit"),
                r.PositiveInt($"{http}.connections.max-unauthenticated", $"{http}.connections.max-unauthenticated")),
            KeyHashes(r, $"{http}.admin-key-hashes", $"{http}.admin-key-hashes"),
            tenants);
    }

    private static int NonNegativeInt(Reader r, string key)
    {
        var v = r.Int(key);
        return v >= 0 ? v : throw new SettingsException(key, $"'{v}' is negative");
    }

    private static IReadOnlyList<string> KeyHashes(Reader r, string key, string fullKey)
    {
        var list = r.StringList(key, fullKey).Select(h => h.Trim().ToLowerInvariant()).ToList();
        foreach (var h in list)
            if (h.Length != 64 || !h.All(char.IsAsciiHexDigit))
                throw new SettingsException(fullKey, "holds SHA-256 hashes of keys (64 hex digits), never the keys themselves");
        return list;
    }

    private static bool LooksLikePath(string model) =>
        model.Contains('/') || model.Contains('\\') || model.StartsWith('.') || Directory.Exists(model);

    /// <summary>Every key the user set under `actorinfer` must exist in the reference with the same shape.</summary>
    private static void CheckKeys(Config user)
    {
        if (!user.HasPath(Section)) return;
        Walk(user.GetValue(Section), Section);

        void Walk(HoconValue value, string path)
        {
            var reference = Reference.HasPath(path) ? Reference.GetValue(path) : null;
            if (reference is null)
                throw new SettingsException(path, "unknown key (not in ActorInfer.Actors' reference.conf)");
            var isObject = value.IsObject();
            if (reference.IsObject() != isObject)
                throw new SettingsException(path, reference.IsObject() ? "must be a section ({ ... }), not a value" : "must be a value, not a section");
            // Dispatcher sections take any of Akka's dispatcher keys.
            if (!isObject || path == "actorinfer.dispatchers.tensor") return;
            foreach (var (key, child) in value.GetObject().Items)
            {
                if (path == "actorinfer.http.tenants") WalkTenant(child, $"{path}.{key}");
                else Walk(child, $"{path}.{key}");
            }
        }

        // Tenant sections are named by the user; their keys are those of tenant-defaults.
        void WalkTenant(HoconValue value, string path)
        {
            if (!value.IsObject()) throw new SettingsException(path, "a tenant must be a section ({ api-key-hashes = [...] })");
            foreach (var (key, child) in value.GetObject().Items)
            {
                var template = $"actorinfer.http.tenant-defaults.{key}";
                if (!Reference.HasPath(template))
                    throw new SettingsException($"{path}.{key}", "unknown key (a tenant takes the keys of actorinfer.http.tenant-defaults)");
                if (child.IsObject()) throw new SettingsException($"{path}.{key}", "must be a value, not a section");
            }
        }
    }

    private sealed class Reader(Config config)
    {
        public bool Has(string key) => config.HasPath(key);

        public long Long(string key, string name) =>
            long.TryParse(String(key, name), System.Globalization.CultureInfo.InvariantCulture, out var v)
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
            return int.TryParse(s, System.Globalization.CultureInfo.InvariantCulture, out var v)
                ? v
                : throw new SettingsException(name ?? key, $"'{s}' is not an integer");
        }

        public int PositiveInt(string key, string name)
        {
            var v = Int(key, name);
            return v > 0 ? v : throw new SettingsException(name, $"'{v}' is not a positive integer");
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
            long.TryParse(String(key), System.Globalization.CultureInfo.InvariantCulture, out var v)
                ? v
                : throw new SettingsException(key, $"'{String(key)}' is not an integer");

        public int PositiveInt(string key) =>
            int.TryParse(String(key), System.Globalization.CultureInfo.InvariantCulture, out var v) && v > 0
                ? v
                : throw new SettingsException(key, $"'{String(key)}' is not a positive integer");

        public long Bytes(string key) =>
            ByteSize.TryParse(String(key), out var v, out var problem) ? v : throw new SettingsException(key, problem);

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
}
