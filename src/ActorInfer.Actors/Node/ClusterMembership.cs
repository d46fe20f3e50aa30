using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using ActorInfer.Actors.Configuration;
using Akka.Actor;
using Akka.Cluster;
using Akka.Configuration;
using Akka.Event;
using Akka.Remote;

namespace ActorInfer.Actors.Node;

/// <summary>
/// A node's membership of an Akka.Cluster (`actorinfer.cluster`): Akka.Remote on the configured address, the split-brain
/// resolver keeping the majority, the seed nodes joined at start (or a cluster of its own founded), and graceful leave
/// when the node stops (the node's coordinated shutdown leaves the cluster before the actor system ends). Members carry
/// the node's roles (`actorinfer.roles`): a gateway-only member routes its work to the worker-only members.
/// </summary>
public static class ClusterMembership
{
    /// <summary>The actor system's cluster configuration (empty when the node runs alone).</summary>
    public static Config For(ActorInferSettings settings)
    {
        var c = settings.Cluster;
        if (!c.Enabled) return Config.Empty;
        return ConfigurationFactory.ParseString($$"""
            akka {
              actor.provider = cluster
              remote.dot-netty.tcp {
                hostname = {{JsonSerializer.Serialize(c.Hostname)}}
                port = {{c.Port}}
                # Job lines and results travel in batches; the default frame (128000 bytes) would cut a long prompt's batch.
                maximum-frame-size = 4194304b
                send-buffer-size = 8388608b
                receive-buffer-size = 8388608b
              }
              cluster {
                roles = [{{string.Join(", ", settings.Roles.Names)}}]
                # A restarted first seed node (the gateway) looks this long for the running members before it founds a
                # cluster of its own.
                seed-node-timeout = 3s
                # A partition keeps the side with more members (on a tie, the side with the lowest address); the other side
                # downs itself. Decided once membership has been stable this long.
                downing-provider-class = "Akka.Cluster.SBR.SplitBrainResolverProvider, Akka.Cluster"
                split-brain-resolver {
                  active-strategy = keep-majority
                  stable-after = {{(int)c.StableAfter.TotalMilliseconds}}ms
                }
                failure-detector.acceptable-heartbeat-pause = {{(int)c.AcceptableHeartbeatPause.TotalMilliseconds}}ms
                # A downed node stops (its actor system ends, and with it the process), so it answers nothing twice.
                run-coordinated-shutdown-when-down = on
                log-info-verbose = off
              }
            }
            """);
    }

    /// <summary>
    /// Refuses a cluster address that cannot be bound before anything starts (Akka.Remote's own failure comes from deep in
    /// the actor system's creation).
    /// </summary>
    public static void CheckAddress(ActorInferSettings settings)
    {
        var c = settings.Cluster;
        if (!c.Enabled || c.Port == 0) return;
        IPAddress[] addresses;
        try
        {
            addresses = IPAddress.TryParse(c.Hostname, out var ip) ? [ip] : Dns.GetHostAddresses(c.Hostname);
        }
        catch (SocketException ex)
        {
            throw new SettingsException("actorinfer.cluster.hostname", $"'{c.Hostname}' does not resolve: {ex.Message}");
        }
        if (addresses.Length == 0) throw new SettingsException("actorinfer.cluster.hostname", $"'{c.Hostname}' does not resolve");
        try
        {
            var listener = new TcpListener(addresses[0], c.Port);
            listener.Start();
            listener.Stop();
        }
        catch (SocketException ex)
        {
            throw new SettingsException("actorinfer.cluster.port", $"cannot listen on {c.Hostname}:{c.Port}: {ex.Message}");
        }
    }

    /// <summary>Joins the seed nodes, or founds a cluster of its own when there are none; logs membership changes.</summary>
    public static void Join(ActorSystem system, ActorInferSettings settings)
    {
        if (!settings.Cluster.Enabled) return;
        var cluster = Cluster.Get(system);
        var seeds = settings.Cluster.SeedNodes.Select(Address.Parse).ToList();
        system.ActorOf(Props.Create(() => new MembershipLog()), "cluster-membership");
        var log = Logging.GetLogger(system, "cluster");
        log.Info("cluster: this node is {0} (roles {1}); {2}", cluster.SelfAddress, string.Join(", ", settings.Roles.Names),
            seeds.Count == 0 ? "founding a cluster" : "joining " + string.Join(", ", seeds));
        if (seeds.Count == 0) cluster.Join(cluster.SelfAddress);
        else cluster.JoinSeedNodes(seeds);
    }

    /// <summary>One log line per membership change another part of the system (or an operator) may act on.</summary>
    private sealed class MembershipLog : ReceiveActor
    {
        private readonly ILoggingAdapter _log = Context.GetLogger();

        public MembershipLog()
        {
            Receive<ClusterEvent.MemberUp>(m => _log.Info("cluster: member up {0} (roles {1})", m.Member.Address, string.Join(", ", m.Member.Roles.Order())));
            Receive<ClusterEvent.MemberRemoved>(m => _log.Info("cluster: member removed {0} (was {1})", m.Member.Address, m.PreviousStatus));
            Receive<ClusterEvent.UnreachableMember>(m => _log.Warning("cluster: member unreachable {0}", m.Member.Address));
            Receive<ClusterEvent.ReachableMember>(m => _log.Info("cluster: member reachable again {0}", m.Member.Address));
            Receive<ClusterEvent.IMemberEvent>(_ => { });
            Receive<ClusterEvent.IReachabilityEvent>(_ => { });
            // Another member quarantined this one (it was frozen past the failure detector and downed, say): the others
            // will never talk to this incarnation again, even when its own resolver kept it (a tie on its side), so it
            // stops as a downed member does, and a restart joins as new.
            Receive<ThisActorSystemQuarantinedEvent>(m =>
            {
                _log.Warning("cluster: {0} quarantined this node; it stops (start it again to rejoin as a new member)", m.RemoteAddress);
                CoordinatedShutdown.Get(Context.System).Run(CoordinatedShutdown.ClusterDowningReason.Instance);
            });
        }

        protected override void PreStart()
        {
            Cluster.Get(Context.System).Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
                typeof(ClusterEvent.IMemberEvent), typeof(ClusterEvent.IReachabilityEvent));
            Context.System.EventStream.Subscribe(Self, typeof(ThisActorSystemQuarantinedEvent));
        }

        protected override void PostStop() => Cluster.Get(Context.System).Unsubscribe(Self);
    }
}
