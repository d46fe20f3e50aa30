using System.Text.Json;
using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Jobs;
using Akka.Configuration;
using Microsoft.Data.Sqlite;

namespace ActorInfer.Actors.Node;

/// <summary>The Akka.Persistence.Sql journal and snapshot store for the configured provider, and the job store snapshot's serializer.</summary>
public static class PersistenceConfig
{
    public static Config For(ActorInferSettings settings)
    {
        var p = settings.Persistence;
        string journal, snapshots, provider, schema = "null";
        if (p.Provider == PersistenceProvider.Sqlite)
        {
            journal = $"Data Source={settings.SqliteJournalPath}";
            snapshots = $"Data Source={settings.SqliteSnapshotPath}";
            provider = "SQLite.MS";
        }
        else
        {
            journal = snapshots = p.PostgresConnectionString;
            provider = "PostgreSQL.15";
            schema = JsonSerializer.Serialize(p.PostgresSchema);
        }
        return ConfigurationFactory.ParseString($$"""
            akka.persistence {
              journal {
                plugin = "akka.persistence.journal.sql"
                sql {
                  connection-string = {{JsonSerializer.Serialize(journal)}}
                  provider-name = "{{provider}}"
                  auto-initialize = true
                  default.schema-name = {{schema}}
                }
              }
              snapshot-store {
                plugin = "akka.persistence.snapshot-store.sql"
                sql {
                  connection-string = {{JsonSerializer.Serialize(snapshots)}}
                  provider-name = "{{provider}}"
                  auto-initialize = true
                  default.schema-name = {{schema}}
                }
              }
            }
            """).WithFallback(ConfigurationFactory.ParseString(JobSnapshotSerializer.Config));
    }

    /// <summary>
    /// Creates the SQLite files' folders and switches them to write-ahead logging (it persists in the file):
    /// sequential persists take about half as long.
    /// </summary>
    public static void PrepareSqlite(ActorInferSettings settings)
    {
        if (settings.Persistence.Provider != PersistenceProvider.Sqlite) return;
        foreach (var path in new[] { settings.SqliteJournalPath, settings.SqliteSnapshotPath })
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            using var connection = new SqliteConnection($"Data Source={path}");
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "PRAGMA journal_mode=WAL;";
            command.ExecuteNonQuery();
        }
    }
}
