using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace ActorInfer.Gateway;

/// <summary>
/// The connection limit in force: the configured maximum, capped so that connections can never take the handles the
/// node needs for its own files (<see cref="FileHandles.Reserve"/>).
/// </summary>
/// <param name="HandleLimit">The process's file-handle limit after raising it; null where it cannot be read.</param>
/// <param name="MaxUnauthenticated">Connections without a valid key yet: the configured cap, at most half of <paramref name="MaxConnections"/>
/// (so that authenticated connections always have room beside a flood).</param>
public sealed record ConnectionLimits(int MaxConnections, long? HandleLimit, int MaxUnauthenticated)
{
    /// <summary>The fewest connections the node serves, whatever its handle limit.</summary>
    public const int Fewest = 64;

    /// <summary>Raises the process's file-handle limit as configured and derives the connection limit from it.</summary>
    public static ConnectionLimits Apply(ConnectionSettings settings)
    {
        var limit = FileHandles.Raise(settings.FileHandleLimit);
        var max = limit is { } l ? (int)Math.Max(Fewest, Math.Min(settings.MaxConnections, l - FileHandles.Reserve)) : settings.MaxConnections;
        return new ConnectionLimits(max, limit, UnauthenticatedWithin(settings.MaxUnauthenticated, max));
    }

    /// <summary>The unauthenticated cap in force beside <paramref name="maxConnections"/>.</summary>
    public static int UnauthenticatedWithin(int configured, int maxConnections) => Math.Max(1, Math.Min(configured, maxConnections / 2));
}

/// <summary>
/// Watches the process's open file handles every few seconds: exported as a gauge, and a warning (with backoff) once
/// more than <see cref="WarnAt"/> of the limit is in use.
/// </summary>
public sealed class FileHandleWatch : IDisposable
{
    public const double WarnAt = 0.8;

    private readonly Timer _timer;
    private readonly ThrottledLog _warnings;

    public FileHandleWatch(long? limit, GatewayMetrics metrics, ILogger log)
    {
        if (limit is { } l) metrics.FileHandleLimit.Set(l);
        _warnings = new ThrottledLog(m => log.LogWarning("{Message}", m), TimeSpan.FromSeconds(30), TimeSpan.FromMinutes(10));
        _timer = new Timer(_ =>
        {
            if (FileHandles.Open() is not { } open)
            {
                _warnings.Failed($"cannot count open file handles (limit {limit}): the process may be out of them");
                return;
            }
            metrics.OpenFileHandles.Set(open);
            if (limit is { } max && open > WarnAt * max) _warnings.Failed($"{open} of {max} file handles are open");
            else _warnings.Recovered();
        }, null, TimeSpan.Zero, TimeSpan.FromSeconds(5));
    }

    public void Dispose() => _timer.Dispose();
}

/// <summary>
/// Kestrel's connection warnings (above all one per connection it refuses at the limit, thousands a second under a
/// flood) go through here instead of the console: counted in <c>actorinfer_connections_rejected_total</c> and logged
/// with backoff.
/// </summary>
public sealed class ConnectionWarnings : ILoggerProvider, ILogger
{
    public const string Category = "Microsoft.AspNetCore.Server.Kestrel.Connections";

    private readonly GatewayMetrics _metrics;
    private readonly ThrottledLog _log;
    private readonly Lock _gate = new();

    public ConnectionWarnings(GatewayMetrics metrics, Action<string> write)
    {
        _metrics = metrics;
        _log = new ThrottledLog(write, TimeSpan.FromSeconds(10), TimeSpan.FromMinutes(5));
    }

    public ILogger CreateLogger(string categoryName) => categoryName == Category ? this : NullLogger.Instance;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel)) return;
        if (eventId.Name == "ConnectionRejected") _metrics.ConnectionsRejected.Inc();
        lock (_gate) _log.Failed(formatter(state, exception));
    }

    public void Dispose()
    {
    }
}
