namespace ActorInfer.Actors.Configuration;

public enum PersistenceProvider
{
    Sqlite,
    PostgreSql,
}

/// <summary>A tier's configured budget: fixed bytes, or null to follow telemetry.</summary>
public sealed record MemorySettings(
    long? GpuBudget,
    long? CpuBudget,
    long? DiskBudget,
    TimeSpan TelemetryInterval,
    long TelemetryChangeThreshold)
{
    /// <summary>
    /// Make the CPU budget's memory at start (touched and, on a GPU node, page-locked) and carve the CPU tier's large
    /// buffers from it, instead of making each when a block first asks for it (see reference.conf's `pin-cpu-budget`).
    /// </summary>
    public bool PinCpuBudget { get; init; }
}

public sealed record SchedulerSettings(int MaxGpuBatchSize, int MaxGpuBatches, TimeSpan MaxWaitForMemory);

public sealed record ControlSettings(TimeSpan PollInterval);

/// <summary>The job store (see reference.conf's `actorinfer.jobs`).</summary>
/// <param name="Retention">How long a finished completion or job is kept (status, results file, idempotency key).</param>
public sealed record JobSettings(TimeSpan Retention)
{
    public static JobSettings Default { get; } = new(TimeSpan.FromHours(24));
}

/// <summary>The policy planner of a node (see reference.conf's `actorinfer.planner`).</summary>
/// <param name="Hardware">"auto" (measure on first start, kept in the data folder), a built-in profile's name, or a profile file.</param>
/// <param name="MaxBlockSize">The largest block (GPU batch size x number of GPU batches) the search considers.</param>
/// <param name="CompressCache">Whether the search may choose a 4-bit compressed cache (it changes outputs).</param>
/// <param name="WholeContext">Plan every block for the model's whole context instead of the queued requests' lengths.</param>
/// <param name="TableStep">Device budgets of the compiled answer table grow by this factor from one entry to the next.</param>
public sealed record PlannerSettings(string Hardware, int MaxBlockSize, bool CompressCache, bool WholeContext, double TableStep)
{
    public static PlannerSettings Default { get; } = new("auto", 1024, false, false, 1.02);

    /// <summary>
    /// Conservative block sizing: how many recent blocks' budget falls set the headroom a new block leaves (0: none, every
    /// block as large as the budgets allow now).
    /// </summary>
    public int HeadroomHistory { get; init; }

    /// <summary>Weight fractions placed over the model as a whole (<c>weight-placement = "spread"</c>) instead of by FlexGen's rule.</summary>
    public bool SpreadWeights { get; init; }
}

/// <summary>The names of the weight placements (`--weight-placement`, `planner.weight-placement`).</summary>
public static class WeightPlacementNames
{
    public const string FlexGen = "flexgen";
    public const string Spread = "spread";
    public static readonly string[] All = [FlexGen, Spread];
}

/// <summary>One of several models a node serves (see reference.conf's `actorinfer.models`).</summary>
/// <param name="Name">The id clients name in `model` (and /v1/models lists).</param>
/// <param name="Model">A checkpoint directory (absolute) or a named size with seeded random weights.</param>
/// <param name="Priority">Higher gets its demand first when the GPU arbiter divides the device.</param>
/// <param name="MemoryFloor">Compute-tier bytes the model keeps whatever the others need; null: none.</param>
/// <param name="MemoryCeiling">Compute-tier bytes the model never gets more than; null: no limit.</param>
/// <param name="StaticShare">
/// FlexGen-style: the model's share is fixed at the first one the arbiter gives it once it has work, and its policy with
/// it; it gives nothing back and takes nothing more (a baseline against the arbiter's elastic division).
/// </param>
public sealed record ServedModelSettings(string Name, string Model, int Priority, long? MemoryFloor, long? MemoryCeiling, long WeightsSeed,
    bool StaticShare = false);

/// <summary>The GPU arbiter of a node serving several models (see reference.conf's `actorinfer.arbiter`).</summary>
/// <param name="PollInterval">How often each model's queue is read to re-divide the device.</param>
/// <param name="ChangeThreshold">Smaller moves of a model's share are not handed to its planner (a fall always is).</param>
/// <param name="ReleaseAfter">A model's share falls only once its demand has stayed lower this long.</param>
/// <param name="ReserveSequences">Sequences each model's demand counts above the larger of its queued and running ones.</param>
/// <param name="OneQueue">One queue without priorities (a baseline): the models run one block at a time, in turns.</param>
/// <param name="LowerPriorityNice">The nice value of the host threads of a model below the top priority (0: unchanged).</param>
/// <param name="LowerPriorityThreads">The intra-op threads of such a model's CPU work (0: unchanged).</param>
public sealed record ArbiterSettings(TimeSpan PollInterval, long ChangeThreshold, TimeSpan ReleaseAfter, int ReserveSequences, bool OneQueue = false,
    int LowerPriorityNice = 10, int LowerPriorityThreads = 0)
{
    public static ArbiterSettings Default { get; } = new(TimeSpan.FromMilliseconds(100), 1L << 20, TimeSpan.FromSeconds(2), 8);
}

/// <summary>One tenant: its name, the SHA-256 (lower-case hex) of its API keys, its priority and its queue limit.</summary>
/// <param name="MaxPriority">The highest priority a job of the tenant may ask for (<c>?priority=N</c>); higher asks are
/// capped to it. The tenant's own <paramref name="Priority"/> is always allowed.</param>
public sealed record TenantSettings(string Name, IReadOnlyList<string> KeyHashes, int Priority, int MaxQueuedRequests, int MaxPriority)
{
    /// <summary>The priority a job of this tenant runs at when it asks for <paramref name="asked"/>.</summary>
    public int CapPriority(int asked) => Math.Min(asked, Math.Max(Priority, MaxPriority));
}

/// <summary>Kestrel's limits on connections, and the file-handle limit the node asks for to serve them.</summary>
/// <param name="MaxUnauthenticated">Connections that have not yet sent a request with a valid key; past it the oldest is closed.</param>
public sealed record ConnectionSettings(int MaxConnections, TimeSpan KeepAliveTimeout, TimeSpan RequestHeadersTimeout, int FileHandleLimit,
    int MaxUnauthenticated = 1000);

/// <summary>The HTTP gateway. Keys are held only as SHA-256 hashes.</summary>
public sealed record HttpSettings(
    bool Enabled,
    string Host,
    int Port,
    long MaxBodyBytes,
    long MaxJobBodyBytes,
    string ServedModelName,
    TimeSpan RetryAfter,
    TimeSpan CompletionTimeout,
    int MaxInvalidJobLines,
    ConnectionSettings Connections,
    IReadOnlyList<string> AdminKeyHashes,
    IReadOnlyList<TenantSettings> Tenants)
{
    /// <summary>SHA-256 of a key, lower-case hex: the only form in which a key is kept.</summary>
    public static string HashKey(string key) =>
        Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(key)));

    /// <summary>
    /// What `--api-key KEY` does: one tenant "default" with that key (priority 0, the default queue limit), and the
    /// same key as admin key when no admin key is configured.
    /// </summary>
    public HttpSettings WithDefaultTenant(string key, int maxQueuedRequests)
    {
        var hash = HashKey(key);
        var others = Tenants.Where(t => t.Name != "default").ToList();
        others.Add(new TenantSettings("default", [hash], 0, maxQueuedRequests, 0));
        return this with { Tenants = others, AdminKeyHashes = AdminKeyHashes.Count > 0 ? AdminKeyHashes : [hash] };
    }
}

/// <summary>A node's Akka.Cluster membership (see reference.conf's `actorinfer.cluster`).</summary>
/// <param name="SeedNodes">Akka addresses of the members to join; empty: the node founds a cluster of its own.</param>
public sealed record ClusterSettings(bool Enabled, string Hostname, int Port, IReadOnlyList<string> SeedNodes,
    TimeSpan AcceptableHeartbeatPause, TimeSpan StableAfter)
{
    public static ClusterSettings Off { get; } = new(false, "127.0.0.1", 0, [], TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(20));
}

/// <summary>What a node does (see reference.conf's `actorinfer.roles`): a gateway, a worker, or both (a node alone).</summary>
public sealed record NodeRoles(bool Gateway, bool Worker)
{
    public static NodeRoles Both { get; } = new(true, true);

    /// <summary>A gateway that routes its work to other members' workers: gateway without worker.</summary>
    public bool RoutesToWorkers => Gateway && !Worker;

    /// <summary>The cluster role names this node's member carries.</summary>
    public IReadOnlyList<string> Names => (Gateway, Worker) switch
    {
        (true, true) => ["gateway", "worker"],
        (true, false) => ["gateway"],
        _ => ["worker"],
    };

    public override string ToString() => string.Join(",", Names);
}

public sealed record PersistenceSettings(
    PersistenceProvider Provider,
    string SqliteJournalFile,
    string SqliteSnapshotFile,
    string PostgresConnectionString,
    string PostgresSchema,
    int SnapshotEvery);

/// <summary>
/// The whole `actorinfer` section, validated. A node is built from this record only: it exists only when every
/// key parsed, so a node never starts half-configured. Paths are absolute.
/// </summary>
public sealed record ActorInferSettings(
    string Model,
    string Device,
    string DType,
    string DataDir,
    long WeightsSeed,
    long RequestSeed,
    MemorySettings Memory,
    SchedulerSettings Scheduler,
    ControlSettings Control,
    PersistenceSettings Persistence,
    HttpSettings Http)
{
    /// <summary>The dispatcher id that every tensor-issuing actor runs on.</summary>
    public const string TensorDispatcher = "actorinfer.dispatchers.tensor";

    /// <summary>The policy planner's settings.</summary>
    public PlannerSettings Planner { get; init; } = PlannerSettings.Default;

    /// <summary>The node's cluster membership; off unless configured.</summary>
    public ClusterSettings Cluster { get; init; } = ClusterSettings.Off;

    /// <summary>Gateway, worker or both (a node alone).</summary>
    public NodeRoles Roles { get; init; } = NodeRoles.Both;
    /// <summary>The job store's settings (retention of finished work).</summary>
    public JobSettings Jobs { get; init; } = JobSettings.Default;

    /// <summary>
    /// The models of a node that serves several (`actorinfer.models`); empty: the node serves <see cref="Model"/> alone,
    /// named <see cref="HttpSettings.ServedModelName"/>.
    /// </summary>
    public IReadOnlyList<ServedModelSettings> Models { get; init; } = [];

    /// <summary>The GPU arbiter's settings (used when the node serves several models).</summary>
    public ArbiterSettings Arbiter { get; init; } = ArbiterSettings.Default;

    /// <summary>How decoding attends on CUDA (`actorinfer.decode-attention`, as `--decode-attention` for the CLI).</summary>
    public ActorInfer.Model.Layers.DecodeAttention DecodeAttention { get; init; } = ActorInfer.Model.Layers.DecodeAttention.Fused;

    /// <summary>Whether a sequence's tokens depend on its own request alone (`actorinfer.batch-invariant`, as `--batch-invariant`).</summary>
    public bool BatchInvariant { get; init; }

    /// <summary>Whether decoding layers run as CUDA graphs where they qualify (`actorinfer.cuda-graphs`, as `--cuda-graphs`).</summary>
    public bool CudaGraphs { get; init; }

    /// <summary>The synthetic job each model runs before the node serves (`actorinfer.warm-up`).</summary>
    public WarmUpSettings WarmUp { get; init; } = WarmUpSettings.Off;

    /// <summary>Whether the node serves several models, each with its own runtime, planner and scheduler, under one arbiter.</summary>
    public bool ServesSeveralModels => Models.Count > 0;

    /// <summary>Every model the node serves, the first being the default (the one a request without `model` gets).</summary>
    public IReadOnlyList<ServedModelSettings> ServedModels =>
        Models.Count > 0 ? Models : [new ServedModelSettings(Http.ServedModelName, Model, 0, null, null, WeightsSeed)];

    /// <summary>These settings as a node of one of its models alone: that model's checkpoint, seed and name.</summary>
    public ActorInferSettings ForModel(ServedModelSettings model) =>
        this with { Model = model.Model, WeightsSeed = model.WeightsSeed, Http = Http with { ServedModelName = model.Name } };

    public bool IsCuda => Device.StartsWith("cuda", StringComparison.Ordinal);
    /// <summary>Where a node keeps the hardware profile it measured on its first start.</summary>
    public string HardwareProfilePath => Path.Combine(DataDir, "hardware.json");
    public string InboxDir => Path.Combine(DataDir, "inbox");
    public string AcceptedDir => Path.Combine(DataDir, "accepted");
    public string ResultsDir => Path.Combine(DataDir, "results");
    public string ControlDir => Path.Combine(DataDir, "control");
    public string SqliteJournalPath => Path.GetFullPath(Persistence.SqliteJournalFile, DataDir);
    public string SqliteSnapshotPath => Path.GetFullPath(Persistence.SqliteSnapshotFile, DataDir);
}

/// <summary>
/// The synthetic job a model runs before its node serves: <paramref name="Requests"/> greedy requests of random token ids,
/// each a prompt of <paramref name="PromptLength"/> tokens and <paramref name="GenerationLength"/> new ones (0 requests: none).
/// </summary>
public sealed record WarmUpSettings(int Requests, int PromptLength, int GenerationLength)
{
    public static readonly WarmUpSettings Off = new(0, 512, 8);
}
