using Address = Akka.Actor.Address;

namespace ActorInfer.Actors.Configuration;

/// <summary>
/// `actorinfer.cluster` and `actorinfer.roles`, read together because a role alone (a gateway or a worker without
/// the other) only makes sense in a cluster.
/// </summary>
internal static class ClusterSection
{
    private const string Cluster = "actorinfer.cluster";

    public static ClusterSettings Read(SettingsReader r)
    {
        var port = r.Int($"{Cluster}.port");
        if (port is < 0 or > 65535) throw new SettingsException($"{Cluster}.port", $"{port} is not a port (0-65535; 0 picks a free one)");
        var seeds = r.StringList($"{Cluster}.seed-nodes", $"{Cluster}.seed-nodes");
        foreach (var seed in seeds)
        {
            Address address;
            try
            {
                address = Address.Parse(seed);
            }
            catch (Exception ex) when (ex is UriFormatException or ArgumentException or FormatException)
            {
                throw new SettingsException($"{Cluster}.seed-nodes", $"'{seed}' is not an address like akka.tcp://actorinfer@127.0.0.1:4053");
            }
            if (address.Protocol != "akka.tcp" || address.System != "actorinfer" || address.Host is null || address.Port is null or <= 0)
                throw new SettingsException($"{Cluster}.seed-nodes", $"'{seed}' is not an address like akka.tcp://actorinfer@127.0.0.1:4053");
        }
        return new ClusterSettings(r.Bool($"{Cluster}.enabled"), r.NonEmptyString($"{Cluster}.hostname"), port, seeds,
            r.Duration($"{Cluster}.acceptable-heartbeat-pause"), r.Duration($"{Cluster}.stable-after"));
    }

    /// <summary>`actorinfer.roles`, checked against the cluster section already read.</summary>
    public static NodeRoles ReadRoles(SettingsReader r, ClusterSettings cluster)
    {
        const string key = "actorinfer.roles";
        var names = r.StringList(key, key);
        foreach (var name in names)
            if (name is not ("gateway" or "worker"))
                throw new SettingsException(key, $"'{name}' is not a role (gateway, worker)");
        var roles = new NodeRoles(names.Contains("gateway"), names.Contains("worker"));
        if (!roles.Gateway && !roles.Worker) throw new SettingsException(key, "names no role (gateway, worker, or both)");
        if (roles != NodeRoles.Both && !cluster.Enabled)
            throw new SettingsException(key, $"'{roles}' alone needs actorinfer.cluster.enabled = on (a gateway routes to the cluster's workers)");
        return roles;
    }
}
