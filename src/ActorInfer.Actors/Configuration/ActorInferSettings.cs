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
    long TelemetryChangeThreshold);

public sealed record SchedulerSettings(int MaxGpuBatchSize, int MaxGpuBatches);

public sealed record ControlSettings(TimeSpan PollInterval);

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
    PersistenceSettings Persistence)
{
    /// <summary>The dispatcher id that every tensor-issuing actor runs on.</summary>
    public const string TensorDispatcher = "actorinfer.dispatchers.tensor";

    public bool IsCuda => Device.StartsWith("cuda", StringComparison.Ordinal);
    public string InboxDir => Path.Combine(DataDir, "inbox");
    public string AcceptedDir => Path.Combine(DataDir, "accepted");
    public string ResultsDir => Path.Combine(DataDir, "results");
    public string ControlDir => Path.Combine(DataDir, "control");
    public string SqliteJournalPath => Path.GetFullPath(Persistence.SqliteJournalFile, DataDir);
    public string SqliteSnapshotPath => Path.GetFullPath(Persistence.SqliteSnapshotFile, DataDir);
}
