using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Node;
using Akka.Actor;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Prometheus;

namespace ActorInfer.Gateway;

/// <summary>What every route handler needs: the node's actors, settings, tenants and metrics.</summary>
public sealed class GatewayContext(ActorInferNode node, IActorRef gateway, HttpSettings http, GatewayMetrics metrics)
{
    public ActorInferNode Node { get; } = node;
    public IActorRef Gateway { get; } = gateway;
    public HttpSettings Http { get; } = http;
    public GatewayMetrics Metrics { get; } = metrics;
    public TenantDirectory Tenants { get; } = new(http);
    public TimeSpan AskTimeout { get; } = TimeSpan.FromSeconds(30);

    /// <summary>Streaming completions' tokens as this node's schedulers choose them.</summary>
    public TokenStreams TokenStreams { get; } = new(node.System);

    /// <summary>The connection limit in force and the file-handle limit behind it.</summary>
    public ConnectionLimits Connections { get; init; } =
        new(http.Connections.MaxConnections, null, ConnectionLimits.UnauthenticatedWithin(http.Connections.MaxUnauthenticated, http.Connections.MaxConnections));

    /// <summary>The connections that have not sent a valid key yet (Kestrel connection middleware); null outside Kestrel.</summary>
    public UnauthenticatedConnections? Unauthenticated { get; init; }

    /// <summary>The models requests may name, the default first: the served name alone, or each model of a node of several.</summary>
    public IReadOnlyList<string> ServedModelNames { get; } =
        node.Settings.ServesSeveralModels ? node.Models.Select(m => m.Name).ToArray() : [http.ServedModelName];

    /// <summary>The factory of a served model (checked by name before).</summary>
    public Model.Generation.CompletionFactory FactoryOf(string model) =>
        Node.Settings.ServesSeveralModels ? Node.ModelNamed(model)?.Factory ?? throw UnknownModel.Error(model, ServedModelNames) : Node.Factory;
}

/// <summary>
/// The HTTP gateway of a node: Kestrel on <c>actorinfer.http.host:port</c> in front of the gateway actor.
/// Every route needs <c>Authorization: Bearer KEY</c> except /healthz and /readyz; a route declares its
/// <see cref="Access"/> and the key check runs before any handler (routes without a declaration need a tenant key).
/// </summary>
public static class GatewayApp
{
    public static WebApplication Build(ActorInferNode node, HttpSettings? http = null)
    {
        http ??= node.Settings.Http;
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ApplicationName = typeof(GatewayApp).Assembly.GetName().Name });
        var metrics = new GatewayMetrics();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.UseUtcTimestamp = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
        });
        builder.Logging.AddFilter<ConsoleLoggerProvider>(ConnectionWarnings.Category, LogLevel.None);
        builder.Logging.AddProvider(new ConnectionWarnings(metrics, m => Console.WriteLine($"warn: {ConnectionWarnings.Category}: {m}")));
        // Request logs would carry paths and timings only (never headers), but are noise at this rate.
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        // A failed start (a port in use) is reported by the node as one error line; the host's own report of it is a stack trace.
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.None);
        builder.WebHost.UseUrls($"http://{http.Host}:{http.Port}");
        var connections = ConnectionLimits.Apply(http.Connections);
        var unauthenticated = new UnauthenticatedConnections(connections.MaxUnauthenticated, () => metrics.ConnectionsEvicted.Inc());
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.ConfigureEndpointDefaults(listen => listen.Use(unauthenticated.Wrap));
            // Bodies are limited per route (413 in OpenAI's error shape), not by Kestrel's generic 30 MB cut.
            k.Limits.MaxRequestBodySize = null;
            k.Limits.MaxConcurrentConnections = connections.MaxConnections;
            k.Limits.MaxConcurrentUpgradedConnections = connections.MaxConnections;
            k.Limits.KeepAliveTimeout = http.Connections.KeepAliveTimeout;
            k.Limits.RequestHeadersTimeout = http.Connections.RequestHeadersTimeout;
        });


        var gateway = node.System.ActorOf(GatewayProtocol.Props(node.Jobs, node.Memory, node.Planner, node.Scheduler, metrics, TimeSpan.FromSeconds(30)), "gateway");
        var context = new GatewayContext(node, gateway, http, metrics) { Connections = connections, Unauthenticated = unauthenticated };
        builder.Services.AddSingleton(context);
        metrics.Registry.AddBeforeCollectCallback(async cancel =>
        {
            var status = await node.Scheduler.Ask<Actors.Scheduling.SchedulerProtocol.SchedulerStatus>(
                Actors.Scheduling.SchedulerProtocol.GetStatus.Instance, TimeSpan.FromSeconds(5), cancel);
            metrics.QueueDepth.Set(status.Queued);
            if (FileHandles.Open() is { } open) metrics.OpenFileHandles.Set(open);
            metrics.UnauthenticatedConnections.Set(unauthenticated.Count);
            if (node.Arbiter is { } arbiter)
            {
                var state = await arbiter.Ask<Actors.Arbiter.ArbiterProtocol.State>(Actors.Arbiter.ArbiterProtocol.GetState.Instance, TimeSpan.FromSeconds(5), cancel);
                foreach (var t in state.Tenants)
                {
                    metrics.ModelShare.WithLabels(t.Name).Set(t.Share);
                    metrics.ModelDemand.WithLabels(t.Name).Set(t.Demand);
                    metrics.ModelDrops.WithLabels(t.Name).Set(t.Drops);
                }
            }
            metrics.SampleManagedMemory();
        });

        var app = builder.Build();
        var watch = new FileHandleWatch(connections.HandleLimit, metrics, app.Logger);
        app.Lifetime.ApplicationStopped.Register(watch.Dispose);
        app.UseRouting();
        app.Use((http, next) => Guard(context, http, next));
        CompletionRoutes.Map(app, context);
        JobRoutes.Map(app, context);
        AdminRoutes.Map(app, context);
        // Alive while the journal opens and reads; a journal that is gone or not a database is not something to wait out.
        app.MapGet("/healthz", () => PersistenceProbe.Unusable(node.Settings) is { } reason
            ? Results.Json(new { status = "unhealthy", reason }, statusCode: StatusCodes.Status503ServiceUnavailable)
            : Results.Json(new { status = "ok" })).WithMetadata(new RouteAccess(Access.Public));
        app.MapGet("/readyz", async () =>
        {
            // Ready once the job store has recovered from its journal and answers, and while the journal can take a write.
            try
            {
                await node.Jobs.Ask<Actors.Jobs.JobProtocol.JobStatus>(new Actors.Jobs.JobProtocol.GetJob(""), TimeSpan.FromSeconds(2));
            }
            catch (Exception ex) when (ex is TimeoutException or AskTimeoutException or TaskCanceledException)
            {
                return Results.Json(new { status = "starting" }, statusCode: StatusCodes.Status503ServiceUnavailable);
            }
            return await Task.Run(() => PersistenceProbe.CannotWrite(node.Settings)) is { } reason
                ? Results.Json(new { status = "not ready", reason }, statusCode: StatusCodes.Status503ServiceUnavailable)
                : Results.Json(new { status = "ready" });
        }).WithMetadata(new RouteAccess(Access.Public));
        // Every tenant's names and counts are in it: operators only.
        app.MapMetrics("/metrics", metrics.Registry).WithMetadata(new RouteAccess(Access.Admin));
        // So that the node's first job is not the one that compiles the path to its acceptance.
        IngestionWarmUp.Run(node.System, node.Factory);
        return app;
    }

    /// <summary>The address Kestrel bound (port 0 resolved), once started.</summary>
    public static string BaseAddress(WebApplication app) =>
        app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();

    /// <summary>Key check, error shape and request counting around every request.</summary>
    private static async Task Guard(GatewayContext context, HttpContext http, RequestDelegate next)
    {
        var endpoint = http.GetEndpoint();
        var route = (endpoint as RouteEndpoint)?.RoutePattern.RawText ?? "unmatched";
        try
        {
            var access = endpoint?.Metadata.GetMetadata<RouteAccess>()?.Access ?? Access.Tenant;
            if (access != Access.Public) Authorize(context, http, endpoint, access);
            if (endpoint is null) throw ApiError.NotFound(null, $"no route {http.Request.Method} {http.Request.Path}");
            await next(http);
            // Routing answers a known path with the wrong method by itself, with an empty body.
            if (http.Response.StatusCode == StatusCodes.Status405MethodNotAllowed && !http.Response.HasStarted)
                throw new ApiError(StatusCodes.Status405MethodNotAllowed, "invalid_request_error", null, "method_not_allowed",
                    $"{http.Request.Method} is not allowed on {http.Request.Path}");
        }
        catch (ApiError error) when (!http.Response.HasStarted)
        {
            await error.WriteAsync(http.Response);
        }
        catch (BadHttpRequestException ex) when (!http.Response.HasStarted)
        {
            await new ApiError(ex.StatusCode, "invalid_request_error", null, null, ex.Message).WriteAsync(http.Response);
        }
        catch (Exception ex) when (!http.Response.HasStarted && ex is not OperationCanceledException)
        {
            // Our fault, not the caller's: logged with its stack, answered in the same error shape as every other error.
            http.RequestServices.GetRequiredService<ILogger<GatewayContext>>().LogError(ex, "{Method} {Route} failed", http.Request.Method, route);
            await new ApiError(StatusCodes.Status500InternalServerError, "server_error", null, "internal_error",
                $"internal error ({ex.GetType().Name}); the request may be retried").WriteAsync(http.Response);
        }
        finally
        {
            context.Metrics.HttpRequests.WithLabels(route, http.Response.StatusCode.ToString(System.Globalization.CultureInfo.InvariantCulture)).Inc();
        }
    }

    private static void Authorize(GatewayContext context, HttpContext http, Endpoint? endpoint, Access access)
    {
        var caller = context.Tenants.Identify(http.Request);
        if (!caller.PresentedKey) throw ApiError.Unauthorized("missing API key: send Authorization: Bearer KEY");
        if (!caller.IsKnown) throw ApiError.Unauthorized("invalid API key");
        context.Unauthenticated?.Authenticated(http.Connection.Id);
        if (endpoint is null) return;
        switch (access)
        {
            case Access.Admin when !caller.IsAdmin:
                throw ApiError.Forbidden("this route needs an admin key");
            case Access.Tenant when caller.Tenant is null:
                throw ApiError.Forbidden("this route needs a tenant's API key");
        }
        if (caller.Tenant is not null) http.SetTenant(caller.Tenant);
        if (caller.IsAdmin) http.SetAdmin();
    }
}
