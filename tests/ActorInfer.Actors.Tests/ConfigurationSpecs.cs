using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Node;
using Akka.Configuration;

namespace ActorInfer.Actors.Tests;

/// <summary>The defaults of ActorInfer.Actors' reference.conf, and what a node refuses at start.</summary>
public sealed class ConfigurationSpecs
{
    private static readonly string Root = TestModels.RepositoryRoot;

    private static ActorInferSettings Load(string hocon, IReadOnlyDictionary<string, string?>? env = null) =>
        SettingsLoader.Load(
            [SettingsLoader.FromEnvironment(env ?? new Dictionary<string, string?>()), ConfigurationFactory.ParseString(hocon)],
            NodeModel.Problem, Root);

    [Fact]
    public void Reference_conf_defaults_are_the_documented_ones()
    {
        var s = Load("");
        Assert.Equal(Path.Combine(Root, "models", "opt-tiny"), s.Model);
        Assert.Equal("cpu", s.Device);
        Assert.Equal("float32", s.DType);
        Assert.Equal(Path.Combine(Root, "data"), s.DataDir);
        Assert.Equal(0, s.WeightsSeed);
        Assert.Equal(0, s.RequestSeed);
        Assert.Equal(new MemorySettings(null, null, null, TimeSpan.FromSeconds(2), 64L << 20), s.Memory);
        Assert.False(s.Memory.PinCpuBudget);
        Assert.True(Load("actorinfer.memory { cpu-budget = 1GiB, pin-cpu-budget = on }").Memory.PinCpuBudget);
        Assert.Contains("cpu-budget in bytes",
            Assert.Throws<SettingsException>(() => Load("actorinfer.memory.pin-cpu-budget = on")).Message);
        Assert.Equal(new SchedulerSettings(8, 4, TimeSpan.FromMinutes(10)), s.Scheduler);
        Assert.Equal(new ControlSettings(TimeSpan.FromMilliseconds(200)), s.Control);
        Assert.Equal(new JobSettings(TimeSpan.FromHours(24)), s.Jobs);
        Assert.Equal(TimeSpan.FromMinutes(1), Load("actorinfer.jobs.retention = 1m").Jobs.Retention);
        Assert.Equal(ActorInfer.Model.Layers.DecodeAttention.Fused, s.DecodeAttention);
        Assert.Equal(ActorInfer.Model.Layers.DecodeAttention.Efficient, Load("actorinfer.decode-attention = efficient").DecodeAttention);
        Assert.Equal(ActorInfer.Model.Layers.DecodeAttention.Fused, Load("actorinfer.decode-attention = fused").DecodeAttention);
        Assert.False(s.BatchInvariant);
        Assert.True(Load("actorinfer.batch-invariant = on").BatchInvariant);
        Assert.False(s.CudaGraphs);
        Assert.True(Load("actorinfer.cuda-graphs = on").CudaGraphs);
        Assert.False(s.Planner.SpreadWeights);
        Assert.True(Load("actorinfer.planner.weight-placement = spread").Planner.SpreadWeights);
        Assert.Equal(new WarmUpSettings(0, 512, 8), s.WarmUp);
        Assert.Equal(new WarmUpSettings(64, 300, 4),
            Load("actorinfer.warm-up { requests = 64, prompt-length = 300, generation-length = 4 }").WarmUp);
        Assert.Equal(new PersistenceSettings(PersistenceProvider.Sqlite, "persistence/journal.db", "persistence/snapshots.db", "", "public", 500),
            s.Persistence);
        Assert.Equal(Path.Combine(Root, "data", "persistence", "journal.db"), s.SqliteJournalPath);
        Assert.NotEqual(s.SqliteJournalPath, s.SqliteSnapshotPath);
        var dispatcher = SettingsLoader.Reference.GetConfig(ActorInferSettings.TensorDispatcher);
        Assert.Equal("ForkJoinDispatcher", dispatcher.GetString("type"));
        Assert.Equal(1, dispatcher.GetInt("dedicated-thread-pool.thread-count"));
    }

    [Fact]
    public void Roles_default_to_both_and_one_role_alone_needs_the_cluster()
    {
        Assert.Equal(NodeRoles.Both, Load("").Roles);
        var gateway = Load("actorinfer { roles = [gateway], cluster.enabled = on }").Roles;
        Assert.Equal(new NodeRoles(true, false), gateway);
        Assert.True(gateway.RoutesToWorkers);
        Assert.Equal(["worker"], Load("actorinfer { roles = [worker], cluster.enabled = on }").Roles.Names);
        foreach (var bad in new[] { "actorinfer.roles = [gateway]", "actorinfer.roles = [worker]", "actorinfer.roles = []",
                     "actorinfer { roles = [gpu], cluster.enabled = on }" })
            Assert.Equal("actorinfer.roles", Assert.Throws<SettingsException>(() => Load(bad)).Key);
    }

    [Fact]
    public void The_repository_overlays_parse_into_settings()
    {
        foreach (var file in Directory.EnumerateFiles(Path.Combine(Root, "hocon"), "*.conf"))
        {
            var text = File.ReadAllText(file);
            var config = ConfigurationFactory.ParseString(text);
            // The PostgreSQL overlay needs a connection string, which the test supplies.
            var env = new Dictionary<string, string?> { ["ACTORINFER_DEVICE"] = "cpu", ["ACTORINFER_POSTGRES_CONNECTION"] = "Host=127.0.0.1" };
            var s = SettingsLoader.Load([SettingsLoader.FromEnvironment(env), config], NodeModel.Problem, Root);
            Assert.NotNull(s);
        }
    }

    [Fact]
    public void Environment_overrides_the_file_and_flags_override_the_environment()
    {
        var env = new Dictionary<string, string?> { ["ACTORINFER_MODEL"] = "opt-125m", ["ACTORINFER_DATA_DIR"] = "/tmp/from-env" };
        var file = ConfigurationFactory.ParseString("actorinfer { model = \"models/opt-tiny\", data-dir = \"/tmp/from-file\" }");
        var fromEnv = SettingsLoader.Load([SettingsLoader.FromEnvironment(env), file], NodeModel.Problem, Root);
        Assert.Equal("opt-125m", fromEnv.Model);
        Assert.Equal("/tmp/from-env", fromEnv.DataDir);
        var flags = SettingsLoader.Overrides([new("actorinfer.data-dir", "/tmp/from-flag"), new("actorinfer.model", null)]);
        var fromFlags = SettingsLoader.Load([flags, SettingsLoader.FromEnvironment(env), file], NodeModel.Problem, Root);
        Assert.Equal("/tmp/from-flag", fromFlags.DataDir);
        Assert.Equal("opt-125m", fromFlags.Model);
    }

    [Theory]
    [InlineData("actorinfer { modle = \"x\" }", "actorinfer.modle")]
    [InlineData("actorinfer.memory { gpu-budgte = 1GiB }", "actorinfer.memory.gpu-budgte")]
    [InlineData("actorinfer.persistence.sqlite.journal = \"j.db\"", "actorinfer.persistence.sqlite.journal")]
    public void An_unknown_key_is_refused_by_its_path(string hocon, string key)
    {
        var ex = Assert.Throws<SettingsException>(() => Load(hocon));
        Assert.Equal(key, ex.Key);
        Assert.Contains("unknown key", ex.Message);
    }

    [Theory]
    [InlineData("actorinfer.scheduler.max-gpu-batch-size = lots", "actorinfer.scheduler.max-gpu-batch-size")]
    [InlineData("actorinfer.scheduler.max-gpu-batches = 0", "actorinfer.scheduler.max-gpu-batches")]
    [InlineData("actorinfer.memory.cpu-budget = \"much\"", "actorinfer.memory.cpu-budget")]
    [InlineData("actorinfer.memory.telemetry-interval = soon", "actorinfer.memory.telemetry-interval")]
    [InlineData("actorinfer.memory = 5", "actorinfer.memory")]
    [InlineData("actorinfer.jobs.retention = forever", "actorinfer.jobs.retention")]
    [InlineData("actorinfer.jobs.retention = 0s", "actorinfer.jobs.retention")]
    [InlineData("actorinfer.model { path = x }", "actorinfer.model")]
    [InlineData("actorinfer.dtype = float64", "actorinfer.dtype")]
    [InlineData("actorinfer.device = tpu", "actorinfer.device")]
    [InlineData("actorinfer.decode-attention = fastest", "actorinfer.decode-attention")]
    [InlineData("actorinfer.planner.weight-placement = even", "actorinfer.planner.weight-placement")]
    [InlineData("actorinfer.batch-invariant = sometimes", "actorinfer.batch-invariant")]
    [InlineData("actorinfer.warm-up.requests = -1", "actorinfer.warm-up.requests")]
    [InlineData("actorinfer.warm-up.prompt-length = 0", "actorinfer.warm-up.prompt-length")]
    [InlineData("actorinfer.warm-up.generation-length = many", "actorinfer.warm-up.generation-length")]
    [InlineData("actorinfer.persistence.provider = mongodb", "actorinfer.persistence.provider")]
    [InlineData("actorinfer.persistence.provider = postgresql", "actorinfer.persistence.postgresql.connection-string")]
    [InlineData("actorinfer.arbiter.lower-priority-nice = 20", "actorinfer.arbiter.lower-priority-nice")]
    [InlineData("actorinfer.arbiter.lower-priority-nice = -1", "actorinfer.arbiter.lower-priority-nice")]
    [InlineData("actorinfer.arbiter.lower-priority-threads = -2", "actorinfer.arbiter.lower-priority-threads")]
    [InlineData("actorinfer.dispatchers.tensor.dedicated-thread-pool.thread-count = 4", "actorinfer.dispatchers.tensor.dedicated-thread-pool.thread-count")]
    public void A_wrong_type_or_value_is_refused_by_its_path(string hocon, string key)
    {
        var ex = Assert.Throws<SettingsException>(() => Load(hocon));
        Assert.Equal(key, ex.Key);
    }

    [Theory]
    [InlineData("actorinfer.model = \"models/no-such-model\"")]
    [InlineData("actorinfer.model = \"opt-7b\"")]
    [InlineData("actorinfer.model = \"hocon\"")]
    public void A_missing_model_is_refused_with_the_key_named(string hocon)
    {
        var ex = Assert.Throws<SettingsException>(() => Load(hocon));
        Assert.Equal("actorinfer.model", ex.Key);
    }
}
