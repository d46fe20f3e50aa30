using System.Text.Json;
using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Node;
using ActorInfer.TestSupport;
using Akka.Configuration;

namespace ActorInfer.Actors.Tests;

/// <summary>
/// Where a persistence spec's journal lives: SQLite files under a fresh data folder, or a fresh database on the test
/// PostgreSQL server (in a schema of its own, so the schema setting is exercised too). Every spec that persists runs
/// on both, as Akka.Persistence.Sql runs one journal spec against every database.
/// </summary>
public sealed class TestJournal : IDisposable
{
    private readonly PostgresTestDatabase? _database;

    private TestJournal(string persistenceSection, PostgresTestDatabase? database)
    {
        _database = database;
        DataDir = TestModels.TempDir();
        Settings = SettingsLoader.Load(
            [ConfigurationFactory.ParseString($"actorinfer.data-dir = {JsonSerializer.Serialize(DataDir)}\n{persistenceSection}")],
            NodeModel.Problem, TestModels.RepositoryRoot);
    }

    public const string PostgresSchema = "journal_spec";

    public static TestJournal Sqlite() => new("actorinfer.persistence.provider = sqlite", null);

    public static TestJournal PostgreSql()
    {
        var database = PostgresTestDatabase.Create();
        return new TestJournal($$"""
            actorinfer.persistence {
              provider = postgresql
              postgresql { connection-string = {{JsonSerializer.Serialize(database.ConnectionString)}}, schema = {{PostgresSchema}} }
            }
            """, database);
    }

    public string DataDir { get; }

    public ActorInferSettings Settings { get; }

    /// <summary>
    /// The actor system's configuration for this journal, prepared as a node prepares it (SQLite in WAL mode; the
    /// PostgreSQL server reached, the schema made and claimable). The first persists on a fresh journal can take seconds on a
    /// loaded machine: the test kit's wait is a bound on failure, not a figure under test.
    /// </summary>
    public Config SystemConfig()
    {
        PersistenceConfig.PrepareSqlite(Settings);
        // A spec's actor systems overlap (a restart while the first still runs): the claim is checked, not held.
        using (PostgresJournal.Claim(Settings)) { }
        return ActorInferNode.SystemConfig(Settings, ConfigurationFactory.ParseString("akka.loglevel = WARNING\nakka.test.single-expect-default = 30s"));
    }

    /// <summary>Rows in the journal and snapshot tables now: on PostgreSQL, proof that the spec wrote there; null on SQLite.</summary>
    public long? PostgresRows() => _database is { } d ? d.Count($"{PostgresSchema}.journal") + d.Count($"{PostgresSchema}.snapshot") : null;

    public void Dispose() => _database?.Dispose();
}
