using System.CommandLine;
using System.Runtime.InteropServices;
using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Diagnostics;
using ActorInfer.Actors.Node;
using ActorInfer.Gateway;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Akka.Configuration;

namespace ActorInfer.Cli.Commands;

/// <summary>
/// `actorinfer node`: starts a node from HOCON (the file over each assembly's reference.conf, environment
/// variables over the file, flags over both) and runs until SIGINT or SIGTERM. Work comes in over HTTP when
/// `actorinfer.http.enabled` (or --host/--port) says so, and always through the data folder: jobs as
/// `inbox/JOB.jsonl`, results in `results/JOB.jsonl`, operator commands in `control/`.
/// </summary>
public static class NodeCommand
{
    public static Command Create()
    {
        var command = new Command("node", "Start a node from a HOCON file; jobs are read from DATA/inbox/*.jsonl, results written to DATA/results/.");
        var config = new Option<string>("--config") { Description = "The node's HOCON file (see hocon/).", Required = true };
        var model = new Option<string?>("--model") { Description = "Overrides actorinfer.model: a checkpoint directory or an OPT size name." };
        var dataDir = new Option<string?>("--data-dir") { Description = "Overrides actorinfer.data-dir." };
        var host = new Option<string?>("--host") { Description = "Overrides actorinfer.http.host and turns HTTP on." };
        var port = new Option<int?>("--port") { Description = "Overrides actorinfer.http.port (0: a free port) and turns HTTP on." };
        var apiKey = new Option<string?>("--api-key") { Description = "Adds the tenant 'default' with this key (also the admin key when the file names none)." };
        var role = new Option<string[]>("--role")
        {
            Description = "Overrides actorinfer.roles: gateway, worker, or both (--role gateway --role worker, or gateway,worker).",
        };
        foreach (var o in new Option[] { config, model, dataDir, host, port, apiKey, role }) command.Options.Add(o);
        command.SetAction(parse => Run(parse.GetValue(config)!,
            new NodeFlags(parse.GetValue(model), parse.GetValue(dataDir), parse.GetValue(host), parse.GetValue(port), parse.GetValue(apiKey),
                parse.GetValue(role) is { Length: > 0 } roles ? roles : null)));
        return command;
    }

    /// <summary>Flags that override the file, as a vLLM server's do.</summary>
    public sealed record NodeFlags(string? Model = null, string? DataDir = null, string? Host = null, int? Port = null, string? ApiKey = null,
        IReadOnlyList<string>? Roles = null);

    /// <summary>Validates every setting into a record first: a bad key is refused before anything starts.</summary>
    public static (ActorInferSettings Settings, Config File) LoadSettings(string configPath, NodeFlags flags,
        IReadOnlyDictionary<string, string?> environment)
    {
        var httpOn = flags.Host is not null || flags.Port is not null ? "on" : null;
        try
        {
            var file = SettingsLoader.ParseFile(configPath);
            var overrides = SettingsLoader.Overrides([
                new("actorinfer.model", flags.Model), new("actorinfer.data-dir", flags.DataDir),
                new("actorinfer.http.host", flags.Host), new("actorinfer.http.port", flags.Port?.ToString(System.Globalization.CultureInfo.InvariantCulture)),
                new("actorinfer.http.enabled", httpOn)]);
            var settings = SettingsLoader.Load([overrides, RoleOverride(flags.Roles), SettingsLoader.FromEnvironment(environment), file], NodeModel.Problem);
            if (flags.ApiKey is { } key)
            {
                if (key.Trim().Length == 0) throw new SettingsException("--api-key", "must not be empty");
                // The file's tenant defaults, as for any tenant it names (1,024 requests where it sets none).
                const string queueKey = "actorinfer.http.tenant-defaults.max-queued-requests";
                var defaults = file.WithFallback(SettingsLoader.Reference).GetInt(queueKey);
                if (defaults < 1) throw new SettingsException(queueKey, $"must be a positive number of requests (got {defaults})");
                settings = settings with { Http = settings.Http.WithDefaultTenant(key.Trim(), defaults) };
            }
            return (settings, file);
        }
        catch (SettingsException ex)
        {
            throw new CliException($"configuration refused: {ex.Message}", 2);
        }
    }

    /// <summary>`--role` as `actorinfer.roles`: each value one role or several separated by commas; the loader checks the names.</summary>
    private static Config RoleOverride(IReadOnlyList<string>? roles)
    {
        if (roles is null) return Config.Empty;
        var names = roles.SelectMany(r => r.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)).Distinct().ToList();
        if (names.Count == 0) throw new SettingsException("--role", "names no role (gateway, worker)");
        return ConfigurationFactory.ParseString($"actorinfer.roles = [{string.Join(", ", names.Select(n => System.Text.Json.JsonSerializer.Serialize(n)))}]");
    }

    private static int Run(string configPath, NodeFlags flags)
    {
        // Before the model and the journal allocate anything: a node runs for days.
        var heap = NativeHeap.Tune();
        var (settings, file) = LoadSettings(configPath, flags, SettingsLoader.ProcessEnvironment());
        // Before the node starts: a SIGTERM or SIGINT while it still starts (its cluster's lines come then) is a request to
        // stop once it has started, so the process exits as asked (0) whatever the moment. Left to the runtime's own
        // handling, the process's exit raced the actor system's shutdown (exit 0 or 143). A second signal while it still
        // starts is left to the runtime: it ends the process (a start that hangs can still be stopped).
        using var stop = new ManualResetEventSlim();
        var starting = 1;
        void Asked(PosixSignalContext c)
        {
            if (stop.IsSet && Volatile.Read(ref starting) == 1) return;
            c.Cancel = true;
            stop.Set();
        }
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Asked);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Asked);
        ActorInferNode node;
        try
        {
            // The file's `akka` section (if any) tunes the actor system; its `actorinfer` section was read above.
            // Logged with ISO 8601 UTC stamps unless the file names its own loggers (a test kit installs its own).
            node = ActorInferNode.Start(settings, file.WithFallback(ConfigurationFactory.ParseString(IsoConsoleLogger.Config)));
        }
        catch (SettingsException ex)
        {
            throw new CliException($"configuration refused: {ex.Message}", 2);
        }
        Volatile.Write(ref starting, 0);
        var served = settings.ServesSeveralModels
            ? $"models {string.Join(", ", settings.Models.Select(m => $"{m.Name} ({m.Model}, priority {m.Priority})"))}"
            : $"model {settings.Model}";
        Console.WriteLine($"node started: roles {settings.Roles}, {served}{(node.HasModel ? "" : " (config and tokenizer only)")}, device {NodeModel.DeviceName(settings)}, data {settings.DataDir}");
        if (settings.Roles.Gateway) Console.WriteLine($"node: drop jobs into {settings.InboxDir}, results appear in {settings.ResultsDir}");
        else Console.WriteLine("node: a worker; it takes its work from the cluster's gateways");
        Console.WriteLine(heap);
        WebApplication? web = null;
        if (settings.Http.Enabled && !settings.Roles.Gateway)
            Console.WriteLine("http: off on a worker without the gateway role (requests go to a gateway)");
        if (settings.Http.Enabled && settings.Roles.Gateway)
        {
            if (settings.Http.Tenants.Count == 0)
                Console.Error.WriteLine("warning: no tenant key is configured, so every HTTP request will be refused (401); " +
                    "add one with --api-key KEY, or a tenant in actorinfer.http.tenants with api-key-hashes = [the SHA-256 of the key]");
            try
            {
                web = GatewayApp.Build(node, settings.Http);
                web.StartAsync().GetAwaiter().GetResult();
            }
            catch (IOException ex)
            {
                node.DisposeAsync().AsTask().GetAwaiter().GetResult();
                throw new CliException($"http: cannot listen on {settings.Http.Host}:{settings.Http.Port}: {ex.Message}", 1);
            }
            Console.WriteLine($"http: listening on {GatewayApp.BaseAddress(web)} (model {string.Join(", ", settings.ServedModels.Select(m => m.Name))}, {settings.Http.Tenants.Count} tenants)");
            var connections = web.Services.GetRequiredService<GatewayContext>().Connections;
            Console.WriteLine($"http: at most {connections.MaxConnections} connections, {connections.MaxUnauthenticated} of them without a valid key (file-handle limit {connections.HandleLimit?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unknown"})");
        }

        WaitHandle.WaitAny([stop.WaitHandle, ((IAsyncResult)node.WhenTerminated).AsyncWaitHandle]);
        if (web is not null)
        {
            web.StopAsync().GetAwaiter().GetResult();
            web.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        // Not asked to stop: the actor system ended by itself (a cluster member downed by the others stops this way). A
        // second signal while the node still started was taken by the runtime's own handling (the process's exit hook ran
        // the actor system's shutdown): asked to stop all the same.
        var downed = !stop.IsSet && Akka.Actor.CoordinatedShutdown.Get(node.System).ShutdownReason is not Akka.Actor.CoordinatedShutdown.ClrExitReason;
        node.DisposeAsync().AsTask().GetAwaiter().GetResult();
        if (downed)
        {
            Console.Error.WriteLine("error: the node's actor system stopped without being asked to (a cluster member downed by the other members stops); start it again to rejoin as a new member");
            return 3;
        }
        Console.WriteLine("node stopped");
        return 0;
    }
}
