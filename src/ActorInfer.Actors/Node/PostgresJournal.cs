using ActorInfer.Actors.Configuration;
using Npgsql;

namespace ActorInfer.Actors.Node;

/// <summary>
/// A node's claim on its PostgreSQL journal, taken before the actor system exists: the server must answer, the schema
/// exist (it is created when missing; the plugin creates its tables but not their schema), and no other node may use
/// the same schema, whose job store it would overwrite. The claim is a session advisory lock on a connection held
/// for the node's life: the server releases it when the node stops or dies, as the OS releases
/// <see cref="DataFolderLock"/>. Without this check an unreachable server shows only as Ask timeouts once the job store
/// tries to recover.
/// </summary>
public sealed class PostgresJournal : IDisposable
{
    private const string ConnectionKey = "actorinfer.persistence.postgresql.connection-string";

    /// <summary>The advisory lock's first key: ActorInfer's journal claims (the second is the schema's hash).</summary>
    private const int LockClass = 0x41494a4c;

    private readonly NpgsqlConnection _connection;
    private readonly string _schema;

    private PostgresJournal(NpgsqlConnection connection, string schema)
    {
        _connection = connection;
        _schema = schema;
    }

    /// <summary>
    /// Claims the journal of a PostgreSQL node (null for SQLite). Throws <see cref="SettingsException"/> naming the
    /// server (never the password) when it cannot be used, and <see cref="JournalClaimedException"/> naming the holder
    /// when another node uses the schema.
    /// </summary>
    public static PostgresJournal? Claim(ActorInferSettings settings)
    {
        if (settings.Persistence.Provider != PersistenceProvider.PostgreSql) return null;
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
        // What another node's refusal names as the holder.
        builder.ApplicationName = $"actorinfer node (pid {Environment.ProcessId} on {Environment.MachineName})";
        var schema = settings.Persistence.PostgresSchema;
        var where = $"PostgreSQL at {builder.Host ?? "localhost"}:{builder.Port} (database {builder.Database ?? builder.Username ?? "(default)"})";
        var connection = new NpgsqlConnection(builder.ConnectionString);
        try
        {
            connection.Open();
            using (var create = connection.CreateCommand())
            {
                create.CommandText = $"CREATE SCHEMA IF NOT EXISTS {QuoteIdentifier(schema)}";
                create.ExecuteNonQuery();
            }
            using var claim = connection.CreateCommand();
            claim.CommandText = "SELECT pg_try_advisory_lock(@class, hashtext(@schema))";
            claim.Parameters.AddWithValue("class", LockClass);
            claim.Parameters.AddWithValue("schema", schema);
            if (claim.ExecuteScalar() is not true)
                throw new JournalClaimedException($"the journal in schema '{schema}' of {where} is in use by {Holder(connection, schema)}");
            return new PostgresJournal(connection, schema);
        }
        catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException or TimeoutException)
        {
            connection.Dispose();
            throw new SettingsException(ConnectionKey, $"{where} cannot be used: {OneLine(ex)}");
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>The application name and client address of the session that holds the schema's lock.</summary>
    private static string Holder(NpgsqlConnection connection, string schema)
    {
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT a.application_name || ' from ' || coalesce(host(a.client_addr), 'a local socket')
            FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.classid = @class AND l.objid = hashtext(@schema)::oid
            """;
        command.Parameters.AddWithValue("class", LockClass);
        command.Parameters.AddWithValue("schema", schema);
        return command.ExecuteScalar() as string ?? "another node";
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

    /// <summary>
    /// Gives the claim back: the lock is released by a statement the server answers first, and then the session closes. A
    /// session's close alone releases it only once the server has ended that session, after the client returned: a node
    /// started again at once (a restart, a test's next actor system) could find its own old claim still held.
    /// </summary>
    public void Dispose()
    {
        try
        {
            using var release = _connection.CreateCommand();
            release.CommandText = "SELECT pg_advisory_unlock(@class, hashtext(@schema))";
            release.Parameters.AddWithValue("class", LockClass);
            release.Parameters.AddWithValue("schema", _schema);
            release.ExecuteScalar();
        }
        catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException or TimeoutException)
        {
            // The session is gone already (the server restarted, the connection broke): its lock went with it.
        }
        _connection.Dispose();
    }
}

/// <summary>Another node holds the PostgreSQL journal a node was configured with (an I/O error to the CLI, as a held data folder is).</summary>
public sealed class JournalClaimedException(string message)
    : IOException($"{message}; stop it or set another actorinfer.persistence.postgresql.schema");
