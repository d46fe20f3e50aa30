using ActorInfer.Actors.Diagnostics;
using ActorInfer.Actors.Memory;
using System.Globalization;
using System.Text.RegularExpressions;
using Akka.Actor;
using Akka.Event;
using Akka.TestKit.Xunit2;
using static ActorInfer.Actors.Memory.MemoryProtocol;

namespace ActorInfer.Actors.Tests;

/// <summary>A budget that follows telemetry is news only when a planner acts on it: its changes are debug lines.</summary>
public sealed class TelemetryLoggingSpecs() : TestKit("akka.loglevel = DEBUG")
{
    private static readonly MemoryProtocol.Settings Auto = new(null, null, null, TimeSpan.FromHours(1), 1000);

    [Fact]
    public void Telemetry_changes_are_logged_at_debug_and_operator_changes_at_info()
    {
        var memory = Sys.ActorOf(MemoryProtocol.Props(Auto, null));
        EventFilter.Debug(contains: "Cpu budget is now 5GiB (telemetry)").ExpectOne(() => memory.Tell(new TelemetryReading(Tier.Cpu, 5L << 30)));
        EventFilter.Info(contains: "Cpu budget is now 4GiB (operator)").ExpectOne(() => memory.Tell(new SetBudget(Tier.Cpu, 4L << 30)));
    }

    [Fact]
    public void Log_lines_carry_ISO_8601_UTC_timestamps()
    {
        var e = new Info(null, "akka://node/user/memory", typeof(TelemetryLoggingSpecs), "Cpu budget is now 4GiB");
        var line = IsoConsoleLogger.Format(e);
        var stamp = e.Timestamp.ToUniversalTime();
        Assert.Matches(new Regex(@"^\[INFO\]\[\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\]\[akka://node/user/memory\] Cpu budget is now 4GiB$"), line);
        Assert.Contains(stamp.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture), line);
    }
}
