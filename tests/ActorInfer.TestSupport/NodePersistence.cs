using System.Text.Json;

namespace ActorInfer.TestSupport;

/// <summary>
/// A test node's journal for a provider name ("sqlite" or "postgresql"), as the `persistence` section of its file:
/// SQLite files under the node's data folder, or a fresh database on the test PostgreSQL server (dropped on dispose).
/// </summary>
public sealed class NodePersistence : IDisposable
{
    private readonly PostgresTestDatabase? _database;

    private NodePersistence(string hocon, PostgresTestDatabase? database)
    {
        Hocon = hocon;
        _database = database;
    }

    /// <summary>HOCON to put inside a node file's `actorinfer { }` section.</summary>
    public string Hocon { get; }

    /// <summary>The PostgreSQL database's connection string; null on SQLite.</summary>
    public string? ConnectionString => _database?.ConnectionString;

    public static NodePersistence Of(string provider) => provider switch
    {
        "sqlite" => new NodePersistence("persistence.provider = sqlite", null),
        "postgresql" => WithDatabase(PostgresTestDatabase.Create()),
        _ => throw new ArgumentException($"unknown provider '{provider}'", nameof(provider)),
    };

    private static NodePersistence WithDatabase(PostgresTestDatabase database) => new(
        $"persistence {{ provider = postgresql, postgresql.connection-string = {JsonSerializer.Serialize(database.ConnectionString)} }}", database);

    public void Dispose() => _database?.Dispose();
}
