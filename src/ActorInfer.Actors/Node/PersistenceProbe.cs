using ActorInfer.Actors.Configuration;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace ActorInfer.Actors.Node;

/// <summary>
/// Whether the node's journal is usable and writable right now, asked of the database itself (a connection of its
/// own), so that health probes tell what the journal would answer the job store: the SQLite file, or the PostgreSQL
/// server of the connection string.
/// </summary>
public static class PersistenceProbe
{
    /// <summary>The journal's table under Akka.Persistence.Sql's default table mapping.</summary>
    private const string JournalTable = "journal";

    /// <summary>Why the journal is unusable (missing, not a database, the server unreachable); null when it opens and reads.</summary>
    public static string? Unusable(ActorInferSettings settings) =>
        settings.Persistence.Provider == PersistenceProvider.Sqlite ? SqliteUnusable(settings) : PostgresProblem(settings, write: false);

    /// <summary>Why the journal cannot take a write now (locked by another writer, read-only, unusable); null when it can.</summary>
    public static string? CannotWrite(ActorInferSettings settings) =>
        settings.Persistence.Provider == PersistenceProvider.Sqlite ? SqliteCannotWrite(settings) : PostgresProblem(settings, write: true);

    private static string? SqliteUnusable(ActorInferSettings settings)
    {
        try
        {
            using var connection = OpenSqlite(settings, SqliteOpenMode.ReadOnly);
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT count(*) FROM sqlite_master;";
            command.ExecuteScalar();
            return null;
        }
        catch (SqliteException ex)
        {
            return $"the journal {settings.SqliteJournalPath} is unusable: {ex.Message}";
        }
    }

    private static string? SqliteCannotWrite(ActorInferSettings settings)
    {
        try
        {
            using var connection = OpenSqlite(settings, SqliteOpenMode.ReadWrite);
            using var command = connection.CreateCommand();
            // Takes the write lock and gives it back at once: nothing is written.
            command.CommandText = "BEGIN IMMEDIATE; ROLLBACK;";
            command.ExecuteNonQuery();
            return null;
        }
        catch (SqliteException ex)
        {
            return $"the journal {settings.SqliteJournalPath} cannot take a write: {ex.Message}";
        }
    }

    private static SqliteConnection OpenSqlite(ActorInferSettings settings, SqliteOpenMode mode)
    {
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder
        {
            DataSource = settings.SqliteJournalPath,
            Mode = mode,
            // A probe waits a moment for a writer, never as long as a request would.
            DefaultTimeout = 1,
            Pooling = false,
        }.ToString());
        connection.Open();
        return connection;
    }

    /// <summary>
    /// A connection of its own and one query: the server answers (<paramref name="write"/> false), and with
    /// <paramref name="write"/> it is not a read-only standby, sessions are not read-only, and the journal's table (once
    /// the journal has created it) takes inserts from this user. Nothing is written.
    /// </summary>
    private static string? PostgresProblem(ActorInferSettings settings, bool write)
    {
        var p = settings.Persistence;
        string where;
        NpgsqlConnectionStringBuilder builder;
        try
        {
            builder = new NpgsqlConnectionStringBuilder(p.PostgresConnectionString) { Timeout = 2, CommandTimeout = 2, Pooling = false };
            // Named by server and database only: the connection string may hold a password.
            where = $"the PostgreSQL journal (database {builder.Database ?? "(default)"} on {builder.Host}:{builder.Port})";
        }
        catch (ArgumentException ex)
        {
            return $"the PostgreSQL connection string (actorinfer.persistence.postgresql.connection-string) is invalid: {ex.Message}";
        }
        try
        {
            using var connection = new NpgsqlConnection(builder.ConnectionString);
            connection.Open();
            using var command = connection.CreateCommand();
            if (!write)
            {
                command.CommandText = "SELECT 1";
                command.ExecuteScalar();
                return null;
            }
            command.CommandText = """
                SELECT pg_is_in_recovery(),
                       current_setting('transaction_read_only') = 'on',
                       to_regclass(quote_ident(@schema) || '.' || quote_ident(@table)) IS NOT NULL
                         AND NOT has_table_privilege(quote_ident(@schema) || '.' || quote_ident(@table), 'INSERT')
                """;
            command.Parameters.AddWithValue("schema", p.PostgresSchema);
            command.Parameters.AddWithValue("table", JournalTable);
            using var reader = command.ExecuteReader();
            reader.Read();
            if (reader.GetBoolean(0)) return $"{where} cannot take a write: the server is a standby in recovery (read-only)";
            if (reader.GetBoolean(1)) return $"{where} cannot take a write: sessions are read-only (default_transaction_read_only)";
            if (reader.GetBoolean(2)) return $"{where} cannot take a write: user {builder.Username} may not insert into {p.PostgresSchema}.{JournalTable}";
            return null;
        }
        catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException or TimeoutException)
        {
            return $"{where} {(write ? "cannot take a write" : "is unusable")}: {ex.Message}";
        }
    }
}
