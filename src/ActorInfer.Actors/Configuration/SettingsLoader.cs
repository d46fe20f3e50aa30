using System.Text.Json;
using Akka.Configuration;
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
    /// <param name="modelProblem">Why a model value names nothing loadable; null when it does.</param>
    public static ActorInferSettings Load(IEnumerable<Config> layers, Func<string, string?> modelProblem, string? baseDirectory = null)
    {
        var user = Config.Empty;
        foreach (var layer in layers) user = user.WithFallback(layer);
        CheckKeys(user);
        var config = user.WithFallback(Reference);
        var baseDir = baseDirectory ?? Directory.GetCurrentDirectory();
        var r = new SettingsReader(config);

        var models = ModelsSection.Read(config, r, modelProblem, baseDir);
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
            r.Bytes("actorinfer.memory.telemetry-change-threshold")) { PinCpuBudget = r.Bool("actorinfer.memory.pin-cpu-budget") };
        if (memory.PinCpuBudget && memory.CpuBudget is null)
            throw new SettingsException("actorinfer.memory.pin-cpu-budget", "needs a cpu-budget in bytes (\"auto\" would pin the host's available memory)");
        if (memory.PinCpuBudget && models.Count > 0)
            throw new SettingsException("actorinfer.memory.pin-cpu-budget", "is for a node of one model: each of several models would make the whole CPU budget");
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

        var cluster = ClusterSection.Read(r);
        var roles = ClusterSection.ReadRoles(r, cluster);
        if (models.Count > 0 && roles != NodeRoles.Both)
            throw new SettingsException("actorinfer.models", $"several models are served by a node alone (roles = [gateway, worker]), not by a '{roles}'");
        var http = HttpSection.Read(config, r, modelPath);
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
                r.Duration("actorinfer.arbiter.release-after"), r.NonNegativeInt("actorinfer.arbiter.reserve-sequences"),
                r.Bool("actorinfer.arbiter.one-queue"), r.IntBetween("actorinfer.arbiter.lower-priority-nice", 0, 19),
                r.NonNegativeInt("actorinfer.arbiter.lower-priority-threads")),
            Planner = ReadPlanner(r, baseDir),
            DecodeAttention = ActorInfer.Model.Layers.DecodeAttentionNames.Parse(
                r.OneOf("actorinfer.decode-attention", ActorInfer.Model.Layers.DecodeAttentionNames.All)),
            BatchInvariant = r.Bool("actorinfer.batch-invariant"),
            CudaGraphs = r.Bool("actorinfer.cuda-graphs"),
            WarmUp = new WarmUpSettings(r.NonNegativeInt("actorinfer.warm-up.requests"), r.PositiveInt("actorinfer.warm-up.prompt-length"),
                r.PositiveInt("actorinfer.warm-up.generation-length")),
            Cluster = cluster,
            Roles = roles,
            Jobs = new JobSettings(r.Duration("actorinfer.jobs.retention")),
        };
    }

    private static PlannerSettings ReadPlanner(SettingsReader r, string baseDir)
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
            r.Bool($"{planner}.whole-context"), tableStep)
        {
            HeadroomHistory = r.NonNegativeInt($"{planner}.headroom-history"),
            SpreadWeights = r.OneOf($"{planner}.weight-placement", WeightPlacementNames.All) == WeightPlacementNames.Spread,
        };
    }

    /// <summary>Whether a model (or profile) value names a file or folder rather than a size or profile name.</summary>
    internal static bool LooksLikePath(string model) =>
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
}
