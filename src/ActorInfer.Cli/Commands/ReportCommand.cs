using System.CommandLine;
using ActorInfer.Cli.Running;
using ActorInfer.Cli.Report;

namespace ActorInfer.Cli.Commands;

/// <summary>`actorinfer report --run DIR`: draws a run's recorded timeline as a PNG.</summary>
public static class ReportCommand
{
    public static Command Create()
    {
        var command = new Command("report", "Draw a run's timeline (recorded by generate --run-dir) as a PNG: memory, throughput and block size over time, with drops and pressure events.");
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
            var timeline = RunTimeline.Read(path);
            var title = $"{dir.Name}: {timeline.Steps.Count} steps, {timeline.Drops.Count} drops, {timeline.Pressure.Count} pressure events";
            var series = TimelineChart.Draw(timeline, png, title);
            Console.WriteLine($"wrote {png} ({TimelineChart.Width}x{TimelineChart.Height}): {timeline.Steps.Count} steps, {timeline.Drops.Count} drops, " +
                              $"{timeline.Pressure.Count} pressure events; {series.Count} series: " +
                              string.Join(", ", series.Select(s => $"{s.Panel}/{s.Name} ({s.Points} points)")));
            return 0;
        });
        return command;
    }
}
