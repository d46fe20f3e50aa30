using ActorInfer.Actors.Configuration;
using Npgsql;

namespace ActorInfer.Actors.Node;

/// <summary>
/// Checks a PostgreSQL journal before the actor system exists: the server must answer and the schema exist (it is
/// created when missing; the plugin creates its tables but not their schema). Without this an unreachable server shows
/// only as Ask timeouts once the job store tries to recover.
/// </summary>
public static class PostgresJournal
{
    private const string ConnectionKey = "actorinfer.persistence.postgresql.connection-string";

    /// <summary>Throws <see cref="SettingsException"/> naming the server (never the password) when it cannot be used.</summary>
    public static void Prepare(ActorInferSettings settings)
    {
        if (settings.Persistence.Provider != PersistenceProvider.PostgreSql) return;
        NpgsqlConnectionStringBuilder builder;
        try
        {
            builder = new NpgsqlConnectionStringBuilder(settings.Persistence.PostgresConnectionString);
        }
        catch (ArgumentException ex)
        {
            throw new SettingsException(ConnectionKey, $"is not an Npgsql connection string: {ex.Message}");
        }
        // A start waits a bounded time for the server, never the driver's default of 15 s per attempt and pool.
        builder.Timeout = Math.Min(builder.Timeout, 10);
        builder.Pooling = false;
        var where = $"PostgreSQL at {builder.Host ?? "localhost"}:{builder.Port} (database {builder.Database ?? builder.Username ?? "(default)"})";
        try
        {
            using var connection = new NpgsqlConnection(builder.ConnectionString);
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = $"CREATE SCHEMA IF NOT EXISTS {QuoteIdentifier(settings.Persistence.PostgresSchema)}";
            command.ExecuteNonQuery();
        }
        catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException or TimeoutException)
        {
            throw new SettingsException(ConnectionKey, $"{where} cannot be used: {OneLine(ex)}");
        }
    }

    private static string QuoteIdentifier(string name) => "\"" + name.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";

    /// <summary>The innermost cause too (a refused connection is a socket error under Npgsql's), on one line.</summary>
    private static string OneLine(Exception ex)
    {
        var inner = ex;
        while (inner.InnerException is not null) inner = inner.InnerException;
        var text = inner == ex ? ex.Message : $"{ex.Message} ({inner.Message})";
        return text.ReplaceLineEndings(" ").Trim();
    }
}
