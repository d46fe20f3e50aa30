using ActorInfer.Actors.Configuration;
using Microsoft.Data.Sqlite;

namespace ActorInfer.Actors.Node;

/// <summary>
/// Whether the node's SQLite journal is usable and writable right now, asked of the file itself (a connection of
/// its own), so that health probes tell what the journal would answer the job store. PostgreSQL is not probed.
/// </summary>
public static class PersistenceProbe
{
    /// <summary>Why the journal is unusable (missing, not a database); null when it opens and reads.</summary>
    public static string? Unusable(ActorInferSettings settings)
    {
        if (settings.Persistence.Provider != PersistenceProvider.Sqlite) return null;
        try
        {
            using var connection = Open(settings, SqliteOpenMode.ReadOnly);
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

    /// <summary>Why the journal cannot take a write now (locked by another writer, read-only, unusable); null when it can.</summary>
    public static string? CannotWrite(ActorInferSettings settings)
    {
        if (settings.Persistence.Provider != PersistenceProvider.Sqlite) return null;
        try
        {
            using var connection = Open(settings, SqliteOpenMode.ReadWrite);
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

    private static SqliteConnection Open(ActorInferSettings settings, SqliteOpenMode mode)
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
}
