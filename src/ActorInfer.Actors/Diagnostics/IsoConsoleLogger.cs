using System.Globalization;
using Akka.Actor;
using Akka.Dispatch;
using Akka.Event;

namespace ActorInfer.Actors.Diagnostics;

/// <summary>
/// The actor systems' log on the console, one line an event, stamped in ISO 8601 UTC
/// (<c>[INFO][2026-12-04T20:42:04.960Z][source] message</c>) where Akka's own console logger writes month/day dates.
/// Warnings and errors go to standard error.
/// </summary>
public sealed class IsoConsoleLogger : ReceiveActor, IRequiresMessageQueue<ILoggerMessageQueueSemantics>
{
    /// <summary>The HOCON line that installs this logger.</summary>
    public const string Config = "akka.loggers = [\"ActorInfer.Actors.Diagnostics.IsoConsoleLogger, ActorInfer.Actors\"]";

    public IsoConsoleLogger()
    {
        Receive<InitializeLogger>(_ => Sender.Tell(new LoggerInitialized()));
        Receive<LogEvent>(Write);
    }

    /// <summary>One event as one line.</summary>
    public static string Format(LogEvent e)
    {
        var level = e.LogLevel() switch
        {
            LogLevel.DebugLevel => "DEBUG",
            LogLevel.InfoLevel => "INFO",
            LogLevel.WarningLevel => "WARNING",
            _ => "ERROR",
        };
        var stamp = e.Timestamp.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
        var cause = e is Error { Cause: { } ex } ? $" ({ex.GetType().Name}: {ex.Message})" : "";
        return $"[{level}][{stamp}][{e.LogSource}] {e.Message}{cause}";
    }

    private static void Write(LogEvent e)
    {
        var line = Format(e);
        if (e.LogLevel() >= LogLevel.WarningLevel) Console.Error.WriteLine(line);
        else Console.WriteLine(line);
    }
}
