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
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.UseUtcTimestamp = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
        });
        // Request logs would carry paths and timings only (never headers), but are noise at this rate.
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        // A failed start (a port in use) is reported by the node as one error line; the host's own report of it is a stack trace.
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.None);
        builder.WebHost.UseUrls($"http://{http.Host}:{http.Port}");
        // Bodies are limited per route (413 in OpenAI's error shape), not by Kestrel's generic 30 MB cut.
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = null);

        var metrics = new GatewayMetrics();
        var gateway = node.System.ActorOf(GatewayProtocol.Props(node.Jobs, node.Memory, node.Planner, node.Scheduler, metrics, TimeSpan.FromSeconds(30)), "gateway");
        var context = new GatewayContext(node, gateway, http, metrics);
        builder.Services.AddSingleton(context);
        metrics.Registry.AddBeforeCollectCallback(async cancel =>
        {
            var status = await node.Scheduler.Ask<Actors.Scheduling.SchedulerProtocol.SchedulerStatus>(
                Actors.Scheduling.SchedulerProtocol.GetStatus.Instance, TimeSpan.FromSeconds(5), cancel);
            metrics.QueueDepth.Set(status.Queued);
        });

        var app = builder.Build();
        app.UseRouting();
        app.Use((http, next) => Guard(context, http, next));
        CompletionRoutes.Map(app, context);
        JobRoutes.Map(app, context);
        AdminRoutes.Map(app, context);
        app.MapGet("/healthz", () => TypedResults.Json(new { status = "ok" })).WithMetadata(new RouteAccess(Access.Public));
        app.MapGet("/readyz", async () =>
        {
            // Ready once the job store has recovered from its journal and answers.
            try
            {
                await node.Jobs.Ask<Actors.Jobs.JobProtocol.JobStatus>(new Actors.Jobs.JobProtocol.GetJob(""), TimeSpan.FromSeconds(2));
                return Results.Json(new { status = "ready" });
            }
            catch (Exception ex) when (ex is TimeoutException or AskTimeoutException or TaskCanceledException)
            {
                return Results.Json(new { status = "starting" }, statusCode: StatusCodes.Status503ServiceUnavailable);
            }
        }).WithMetadata(new RouteAccess(Access.Public));
        app.MapMetrics("/metrics", metrics.Registry).WithMetadata(new RouteAccess(Access.AnyKey));
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
        if (endpoint is null) return;
        switch (access)
        {
            case Access.Admin when !caller.IsAdmin:
                throw ApiError.Forbidden("this route needs an admin key");
            case Access.Tenant when caller.Tenant is null:
                throw ApiError.Forbidden("this route needs a tenant's API key");
        }
        if (caller.Tenant is not null) http.SetTenant(caller.Tenant);
    }
}
