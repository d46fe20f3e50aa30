using System.Text.Json;
using Microsoft.Data.Sqlite;

namespace ActorInfer.Gateway.Tests;

/// <summary>Health that tells the truth: /readyz fails while the journal cannot take a write, /healthz when the journal is gone.</summary>
public sealed class HealthTests
{
    [Fact]
    public async Task Readyz_fails_while_another_writer_holds_the_journal_and_healthz_fails_once_the_journal_is_gone()
    {
        var dir = GatewayFixture.TempDir();
        var config = Path.Combine(dir, "node.conf");
        File.WriteAllText(config, "actorinfer { model = \"models/opt-tiny\", memory.telemetry-interval = 1h }");
        var data = Path.Combine(dir, "data");
        await using var node = await StartedNode.Start(config, data);
        using var client = node.Client();
        await GatewayFixture.Poll(async () => (int)(await client.GetAsync("/readyz")).StatusCode, s => s == 200, TimeSpan.FromSeconds(60));
        var journal = node.Node.Settings.SqliteJournalPath;

        // Another process's writer (here a connection of the test's own) holds the journal's write lock.
        await using (var writer = new SqliteConnection($"Data Source={journal};Pooling=False"))
        {
            writer.Open();
            using (var begin = writer.CreateCommand())
            {
                begin.CommandText = "BEGIN IMMEDIATE;";
                begin.ExecuteNonQuery();
            }
            using var locked = await client.GetAsync("/readyz");
            Assert.Equal(503, (int)locked.StatusCode);
            var body = await GatewayFixture.ReadJson(locked);
            Assert.Equal("not ready", body.GetProperty("status").GetString());
            Assert.Contains("cannot take a write", body.GetProperty("reason").GetString());
            // Alive all the same: a lock is waited out, not restarted.
            Assert.Equal(200, (int)(await client.GetAsync("/healthz")).StatusCode);
            using var rollback = writer.CreateCommand();
            rollback.CommandText = "ROLLBACK;";
            rollback.ExecuteNonQuery();
        }
        Assert.Equal(200, (int)(await client.GetAsync("/readyz")).StatusCode);

        // The journal removed from under the node: neither alive nor ready, and both say why.
        foreach (var file in Directory.EnumerateFiles(Path.GetDirectoryName(journal)!, Path.GetFileName(journal) + "*")) File.Delete(file);
        foreach (var route in new[] { "/healthz", "/readyz" })
        {
            using var response = await client.GetAsync(route);
            Assert.True(503 == (int)response.StatusCode, route);
            Assert.Contains(journal, (await GatewayFixture.ReadJson(response)).GetProperty("reason").GetString());
        }
    }
}
