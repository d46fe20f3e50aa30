using Npgsql;

namespace ActorInfer.TestSupport;

/// <summary>
/// A database of its own on the test server (scripts/test starts it with scripts/postgres-up and names it in
/// ACTORINFER_TEST_POSTGRES), so that tests and runs never see each other's journals; dropped on dispose.
/// </summary>
public sealed class PostgresTestDatabase : IDisposable
{
    public const string Variable = "ACTORINFER_TEST_POSTGRES";

    private PostgresTestDatabase(string server, string name)
    {
        Server = server;
        Name = name;
        ConnectionString = new NpgsqlConnectionStringBuilder(server) { Database = name }.ConnectionString;
    }

    /// <summary>The server's connection string (its own database).</summary>
    public string Server { get; }

    public string Name { get; }

    /// <summary>The connection string of this test's database.</summary>
    public string ConnectionString { get; }

    public static string ServerConnectionString =>
        Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } s
            ? s
            : throw new InvalidOperationException(
                $"{Variable} is not set: run the tests with scripts/test, which starts PostgreSQL (scripts/postgres-up) and sets it");

    public static PostgresTestDatabase Create()
    {
        var database = new PostgresTestDatabase(ServerConnectionString, "test_" + Guid.NewGuid().ToString("N"));
        database.Execute($"CREATE DATABASE {database.Name}");
        return database;
    }

    private void Execute(string sql)
    {
        using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(Server) { Pooling = false }.ConnectionString);
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    /// <summary>The number of rows in a table of this database (a test's look at what the journal holds).</summary>
    public long Count(string table)
    {
        using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(ConnectionString) { Pooling = false }.ConnectionString);
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT count(*) FROM {table}";
        return (long)command.ExecuteScalar()!;
    }

    public void Dispose()
    {
        // Pools of the test's actor systems may still hold connections: FORCE ends them.
        NpgsqlConnection.ClearAllPools();
        Execute($"DROP DATABASE IF EXISTS {Name} WITH (FORCE)");
    }
}
