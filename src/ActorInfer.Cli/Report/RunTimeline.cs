using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using ActorInfer.Cli.Running;

namespace ActorInfer.Cli.Report;

/// <summary>One decoding step's sample: budgets and bytes held (bytes; CPU bytes held where the run recorded them).</summary>
internal sealed record TimelineStep(double Seconds, long GpuBudget, long CpuBudget, long DeviceBytes, long? CpuBytes, int BlockSize, long Tokens);

/// <summary>A labelled moment of the run: a pressure event, a drop (with the sequences it requeued).</summary>
internal sealed record TimelineEvent(double Seconds, string Detail, int Requeued = 0);

/// <summary>A run's timeline as <see cref="RunRecorder"/> wrote it (<c>timeline.jsonl</c>).</summary>
internal sealed partial record RunTimeline(List<TimelineStep> Steps, List<TimelineEvent> Drops, List<TimelineEvent> Pressure)
{
    [GeneratedRegex(@"(?<n>[0-9]+) sequences")]
    private static partial Regex Sequences();

    public static RunTimeline Read(string path)
    {
        var steps = new List<TimelineStep>();
        var drops = new List<TimelineEvent>();
        var pressure = new List<TimelineEvent>();
        var n = 0;
        foreach (var line in File.ReadLines(path))
        {
            n++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                var e = JsonDocument.Parse(line).RootElement;
                var t = e.GetProperty("t_ms").GetDouble() / 1000;
                switch (e.GetProperty("kind").GetString())
                {
                    case "step":
                        steps.Add(new TimelineStep(t, e.GetProperty("gpu_budget").GetInt64(), e.GetProperty("cpu_budget").GetInt64(),
                            e.GetProperty("device_bytes").GetInt64(), e.TryGetProperty("cpu_bytes", out var cpu) ? cpu.GetInt64() : null,
                            e.GetProperty("block_size").GetInt32(), e.GetProperty("tokens").GetInt64()));
                        break;
                    case "drop":
                        var detail = e.GetProperty("detail").GetString() ?? "";
                        var requeued = Sequences().Match(detail) is { Success: true } m ? int.Parse(m.Groups["n"].Value, CultureInfo.InvariantCulture) : 0;
                        drops.Add(new TimelineEvent(t, detail, requeued));
                        break;
                    case "pressure":
                        pressure.Add(new TimelineEvent(t, e.GetProperty("detail").GetString() ?? ""));
                        break;
                }
            }
            catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw new CliException($"{path} line {n}: not a timeline record ({ex.Message})");
            }
        }
        if (steps.Count == 0) throw new CliException($"{path} holds no steps");
        return new RunTimeline(steps, drops, pressure);
    }
}
