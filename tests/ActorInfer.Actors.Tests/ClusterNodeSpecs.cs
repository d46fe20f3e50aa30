using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Node;
using ActorInfer.TestSupport;
using Akka.Configuration;

namespace ActorInfer.Actors.Tests;

/// <summary>
/// `actorinfer.cluster` on real `actorinfer node` processes: two nodes form an Akka.Cluster on the loopback from their
/// files (hocon/cluster-node.conf), and a node stopped with SIGTERM leaves it gracefully (the other sees it removed after exiting, not downed).
/// Bad cluster keys, and an address that cannot be bound, are refused before anything starts.
/// </summary>
public sealed partial class ClusterNodeSpecs
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    [GeneratedRegex(@"cluster: this node is (akka\.tcp://actorinfer@\S+) \(roles gateway, worker\)")]
    private static partial Regex Self();

    /// <summary>hocon/cluster-node.conf as it is, then the test's keys (a free port: tests run beside other nodes).</summary>
    private static string Config(string dir, string name, string cluster)
    {
        var path = Path.Combine(dir, name);
        File.WriteAllText(path, File.ReadAllText(Path.Combine(TestModels.RepositoryRoot, "hocon", "cluster-node.conf")) + $$"""

            actorinfer {
              model = "models/opt-tiny"
              cluster { port = 0, {{cluster}} }
            }
            """);
        return path;
    }

    /// <summary>A line holding <paramref name="text"/>, whether already read or still to come (lines of two kinds may come in either order).</summary>
    private static void WaitForLine(NodeProcess node, string text)
    {
        if (!node.Output.Any(l => l.Contains(text, StringComparison.Ordinal))) node.WaitForLine(l => l.Contains(text, StringComparison.Ordinal), Timeout);
    }

    private static string Address(NodeProcess node) => Self().Match(node.WaitForLine(Self().IsMatch, Timeout)).Groups[1].Value;

    [Fact]
    public void Two_nodes_form_a_cluster_from_their_files_and_one_stopped_with_SIGTERM_leaves_it_gracefully()
    {
        var dir = TestModels.TempDir();
        using var first = new NodeProcess("node", "--config", Config(dir, "first.conf", ""), "--data-dir", Path.Combine(dir, "first"));
        var founder = Address(first);
        Assert.StartsWith("akka.tcp://actorinfer@127.0.0.1:", founder);
        first.WaitForLine(l => l.Contains($"cluster: member up {founder} (roles gateway, worker)"), Timeout);

        using var second = new NodeProcess("node", "--config", Config(dir, "second.conf", $"seed-nodes = [{JsonSerializer.Serialize(founder)}]"),
            "--data-dir", Path.Combine(dir, "second"));
        var joiner = Address(second);
        Assert.NotEqual(founder, joiner);
        first.WaitForLine(l => l.Contains($"cluster: member up {joiner} (roles gateway, worker)"), Timeout);
        second.WaitForLine(l => l.Contains($"cluster: member up {founder}"), Timeout);
        // The node takes SIGTERM as a request to stop once it says it started: the cluster's lines above come while it
        // still starts, when the runtime's own handling of the signal would end its actor system under it (exit 3).
        WaitForLine(second, "node started");

        second.Terminate();
        Assert.Equal(0, second.WaitForExit(Timeout));
        // A member that left is removed after Exiting; one that was downed would be removed after Down.
        first.WaitForLine(l => l.Contains($"cluster: member removed {joiner} (was Exiting)"), Timeout);
    }

    /// <summary>
    /// A SIGTERM as soon as the node says it is a cluster member, while it still starts (its actors, its journal), stops it
    /// as asked: exit 0, not the "downed" exit 3, though the runtime's own handling of the signal ran the shutdown.
    /// </summary>
    [Fact]
    public void A_sigterm_while_the_node_still_starts_stops_it_as_asked()
    {
        var dir = TestModels.TempDir();
        using var node = new NodeProcess("node", "--config", Config(dir, "node.conf", ""), "--data-dir", Path.Combine(dir, "node"));
        node.WaitForLine(l => l.Contains("cluster: this node is", StringComparison.Ordinal), Timeout);
        node.Terminate();
        var exit = node.WaitForExit(Timeout);
        Assert.True(exit == 0, $"exit {exit}:\n{string.Join("\n", node.Output)}");
        Assert.DoesNotContain(node.Output, l => l.Contains("without being asked", StringComparison.Ordinal));
    }

    /// <summary>The address's port: members are ordered by host, then port.</summary>
    private static int Port(string address) => int.Parse(address[(address.LastIndexOf(':') + 1)..], System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public void A_member_frozen_past_the_failure_detector_is_downed_by_the_survivor_and_stops_once_it_resumes()
    {
        // A short failure detector and resolver: the figures under test are the decisions, not the waits.
        const string quick = "acceptable-heartbeat-pause = 2s, stable-after = 3s";
        var dir = TestModels.TempDir();
        using var first = new NodeProcess("node", "--config", Config(dir, "first.conf", quick), "--data-dir", Path.Combine(dir, "first"));
        var founder = Address(first);
        using var second = new NodeProcess("node", "--config", Config(dir, "second.conf", $"{quick}, seed-nodes = [{JsonSerializer.Serialize(founder)}]"),
            "--data-dir", Path.Combine(dir, "second"));
        var joiner = Address(second);
        // Both members Up in both views: a member that has not yet seen itself Up counts for no side and downs itself.
        foreach (var node in new[] { first, second })
            foreach (var member in new[] { founder, joiner })
                WaitForLine(node, $"cluster: member up {member}");

        // Of two members keep-majority keeps the side with the lowest address: freeze the other one.
        var (survivor, frozen, frozenAddress) = Port(founder) < Port(joiner) ? (first, second, joiner) : (second, first, founder);
        frozen.Stop();
        try
        {
            survivor.WaitForLine(l => l.Contains($"cluster: member unreachable {frozenAddress}"), Timeout);
            survivor.WaitForLine(l => l.Contains($"cluster: member removed {frozenAddress} (was Down)"), Timeout);
        }
        finally
        {
            frozen.Continue();
        }
        // Resumed, it learns it was downed (or downs itself, alone on its side) and stops: it serves nothing any more.
        frozen.WaitForExit(Timeout);
        Assert.False(survivor.HasExited, "the survivor stopped as well");
    }

    private static ActorInferSettings Load(string hocon) => SettingsLoader.Load(
        [ConfigurationFactory.ParseString(hocon)], NodeModel.Problem, TestModels.RepositoryRoot);

    [Theory]
    [InlineData("actorinfer.cluster.seed-nodes = [\"127.0.0.1:4053\"]", "actorinfer.cluster.seed-nodes")]
    [InlineData("actorinfer.cluster.seed-nodes = [\"akka.tcp://other@127.0.0.1:4053\"]", "actorinfer.cluster.seed-nodes")]
    [InlineData("actorinfer.cluster.seed-nodes = \"akka.tcp://actorinfer@127.0.0.1:4053\"", "actorinfer.cluster.seed-nodes")]
    [InlineData("actorinfer.cluster.port = 70000", "actorinfer.cluster.port")]
    [InlineData("actorinfer.cluster.enabled = sometimes", "actorinfer.cluster.enabled")]
    [InlineData("actorinfer.cluster.stable-after = never", "actorinfer.cluster.stable-after")]
    [InlineData("actorinfer.cluster.seed = []", "actorinfer.cluster.seed")]
    public void A_bad_cluster_key_is_refused_naming_it(string hocon, string key) =>
        Assert.StartsWith(key + ":", Assert.Throws<SettingsException>(() => Load(hocon)).Message);

    [Fact]
    public void The_cluster_settings_are_read_and_an_address_in_use_is_refused_before_the_node_starts()
    {
        var off = Load("");
        Assert.False(off.Cluster.Enabled);
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;
        var on = Load($$"""actorinfer.cluster { enabled = on, port = {{port}}, seed-nodes = ["akka.tcp://actorinfer@127.0.0.1:4053"] }""");
        Assert.Equal(("127.0.0.1", port, "akka.tcp://actorinfer@127.0.0.1:4053"), (on.Cluster.Hostname, on.Cluster.Port, Assert.Single(on.Cluster.SeedNodes)));
        var error = Assert.Throws<SettingsException>(() => ClusterMembership.CheckAddress(on));
        Assert.Equal("actorinfer.cluster.port", error.Key);
        Assert.Contains($"127.0.0.1:{port}", error.Message);
        // The config a clustered node's actor system gets: the cluster provider, the address, keep-majority.
        var config = ClusterMembership.For(on);
        Assert.Equal("cluster", config.GetString("akka.actor.provider"));
        Assert.Equal(port, config.GetInt("akka.remote.dot-netty.tcp.port"));
        Assert.Equal("keep-majority", config.GetString("akka.cluster.split-brain-resolver.active-strategy"));
        Assert.True(ClusterMembership.For(off).IsEmpty);
    }
}
