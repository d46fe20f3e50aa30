using System.CommandLine;
using System.Text.Json;
using ActorInfer.Cli.Engine;

namespace ActorInfer.Cli.Commands;

/// <summary>`actorinfer report --run DIR`: draws a run's recorded timeline as a PNG.</summary>
public static class ReportCommand
{
    public static Command Create()
    {
        var command = new Command("report", "Draw a run's timeline (recorded by generate --run-dir) as a PNG: budget, bytes held, block size, throughput, drops.");
        var run = new Option<DirectoryInfo>("--run") { Description = "The run folder (holds timeline.jsonl).", Required = true };
        var output = new Option<FileInfo?>("--output") { Description = "PNG to write (default: RUN/report.png)." };
        command.Options.Add(run);
        command.Options.Add(output);
        command.SetAction(parse =>
        {
            var dir = parse.GetValue(run)!;
            var path = Path.Combine(dir.FullName, RunRecorder.FileName);
            if (!File.Exists(path)) throw new CliException($"--run: {dir.FullName} holds no {RunRecorder.FileName} (record one with generate --run-dir)");
            var png = parse.GetValue(output)?.FullName ?? Path.Combine(dir.FullName, "report.png");
            var timeline = Timeline.Read(path);
            Draw(timeline, png);
            Console.WriteLine($"wrote {png}: {timeline.Steps.Count} steps, {timeline.Drops.Count} drops, {timeline.Pressure.Count} pressure events");
            return 0;
        });
        return command;
    }

    private sealed record Step(double Seconds, double GpuBudgetGiB, double DeviceGiB, int BlockSize, long Tokens);

    private sealed record Timeline(List<Step> Steps, List<(double Seconds, string Detail)> Drops, List<(double Seconds, string Detail)> Pressure)
    {
        public static Timeline Read(string path)
        {
            var steps = new List<Step>();
            var drops = new List<(double, string)>();
            var pressure = new List<(double, string)>();
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
                            steps.Add(new Step(t, e.GetProperty("gpu_budget").GetInt64() / (double)(1L << 30),
                                e.GetProperty("device_bytes").GetInt64() / (double)(1L << 30), e.GetProperty("block_size").GetInt32(),
                                e.GetProperty("tokens").GetInt64()));
                            break;
                        case "drop":
                            drops.Add((t, e.GetProperty("detail").GetString() ?? ""));
                            break;
                        case "pressure":
                            pressure.Add((t, e.GetProperty("detail").GetString() ?? ""));
                            break;
                    }
                }
                catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
                {
                    throw new CliException($"{path} line {n}: not a timeline record ({ex.Message})");
                }
            }
            if (steps.Count == 0) throw new CliException($"{path} holds no steps");
            return new Timeline(steps, drops, pressure);
        }
    }

    private static void Draw(Timeline timeline, string png)
    {
        var plot = new ScottPlot.Plot();
        var seconds = timeline.Steps.Select(s => s.Seconds).ToArray();
        var budget = plot.Add.ScatterLine(seconds, timeline.Steps.Select(s => Math.Min(s.GpuBudgetGiB, 1e6)).ToArray());
        budget.LegendText = "device budget (GiB)";
        var held = plot.Add.ScatterLine(seconds, timeline.Steps.Select(s => s.DeviceGiB).ToArray());
        held.LegendText = "device bytes held (GiB)";
        // Throughput over the last few steps, on the right axis with the block size.
        var rate = new double[seconds.Length];
        for (var i = 1; i < seconds.Length; i++)
        {
            var from = Math.Max(0, i - 5);
            var dt = seconds[i] - seconds[from];
            rate[i] = dt > 0 ? (timeline.Steps[i].Tokens - timeline.Steps[from].Tokens) / dt : 0;
        }
        var throughput = plot.Add.ScatterLine(seconds, rate);
        throughput.LegendText = "throughput (tokens/s)";
        throughput.Axes.YAxis = plot.Axes.Right;
        var block = plot.Add.ScatterLine(seconds, timeline.Steps.Select(s => (double)s.BlockSize).ToArray());
        block.LegendText = "block size (sequences)";
        block.Axes.YAxis = plot.Axes.Right;
        foreach (var (t, _) in timeline.Drops)
        {
            var line = plot.Add.VerticalLine(t);
            line.LineColor = ScottPlot.Colors.Red.WithAlpha(0.5);
        }
        foreach (var (t, _) in timeline.Pressure)
        {
            var line = plot.Add.VerticalLine(t);
            line.LineColor = ScottPlot.Colors.Gray.WithAlpha(0.5);
            line.LinePattern = ScottPlot.LinePattern.Dashed;
        }
        plot.Title($"run timeline: {timeline.Drops.Count} drops (red), {timeline.Pressure.Count} pressure events (dashed)");
        plot.Axes.Bottom.Label.Text = "seconds";
        plot.Axes.Left.Label.Text = "GiB";
        plot.Axes.Right.Label.Text = "tokens/s, sequences";
        plot.ShowLegend();
        plot.SavePng(png, 1200, 600);
    }
}
