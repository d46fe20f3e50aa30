using System.Buffers.Binary;
using System.Text.Json;
using ActorInfer.Cli.Report;
using ScottPlot;

namespace ActorInfer.Cli.Tests;

/// <summary>`actorinfer report` on a recorded pressure run: three panels, every series named in a legend drawn with points.</summary>
public sealed class ReportChartTests
{
    /// <summary>A run of 60 steps: the device budget falls at 2 s (a drop requeues 3 sequences) and rises at 4 s.</summary>
    private static string RecordedRun()
    {
        var dir = CliHarness.TempDir();
        var lines = new List<string>();
        long tokens = 0;
        for (var i = 0; i < 60; i++)
        {
            var t = i * 100.0;
            var falling = t >= 2000 && t < 4000;
            if (i == 20) lines.Add(JsonSerializer.Serialize(new { t_ms = t - 1, kind = "pressure", detail = "gpu 1 GiB" }));
            if (i == 20) lines.Add(JsonSerializer.Serialize(new { t_ms = t - 0.5, kind = "drop", detail = "1 GPU batches, 3 sequences" }));
            if (i == 40) lines.Add(JsonSerializer.Serialize(new { t_ms = t - 1, kind = "pressure", detail = "gpu 4 GiB" }));
            var block = falling ? 3 : 6;
            tokens += block;
            lines.Add(JsonSerializer.Serialize(new
            {
                t_ms = t, kind = "step", gpu_budget = falling ? 1L << 30 : 4L << 30, cpu_budget = 8L << 30,
                device_bytes = (falling ? 900L : 3000L) << 20, cpu_bytes = 512L << 20, block_size = block, tokens,
            }));
        }
        File.WriteAllLines(Path.Combine(dir, "timeline.jsonl"), lines);
        return dir;
    }

    private static (int Width, int Height) PngSize(string path)
    {
        var header = File.ReadAllBytes(path).AsSpan(0, 24);
        Assert.True(header[1..4].SequenceEqual("PNG"u8), "not a PNG");
        return (BinaryPrimitives.ReadInt32BigEndian(header[16..20]), BinaryPrimitives.ReadInt32BigEndian(header[20..24]));
    }

    [Fact]
    public void The_report_is_three_panels_of_named_series_each_drawn()
    {
        var run = RecordedRun();
        var (code, output, error) = CliHarness.Run("report", "--run", run);
        Assert.True(code == 0, error);
        var png = Path.Combine(run, "report.png");
        Assert.Equal((TimelineChart.Width, TimelineChart.Height), PngSize(png));
        Assert.Contains("7 series", output);

        var series = TimelineChart.Draw(RunTimeline.Read(Path.Combine(run, "timeline.jsonl")), png, "test");
        Assert.Equal(["memory", "memory", "memory", "memory", "throughput", "block size", "block size"], series.Select(s => s.Panel));
        Assert.Equal(["device budget", "device bytes held", "CPU budget", "CPU bytes held", "tokens/s (2 s window)", "block size", "drops (3 requeued)"],
            series.Select(s => s.Name));
        // Every named series has points; the throughput has none at each of the three phases' first steps (its window restarts there).
        Assert.Equal([60, 60, 60, 60, 57, 60, 1], series.Select(s => s.Points));
    }

    [Fact]
    public void The_report_draws_with_its_own_font_and_the_same_picture_twice()
    {
        var run = RecordedRun();
        var timeline = RunTimeline.Read(Path.Combine(run, "timeline.jsonl"));
        var first = Path.Combine(run, "first.png");
        var second = Path.Combine(run, "second.png");
        TimelineChart.Draw(timeline, first, "test");
        TimelineChart.Draw(timeline, second, "test");
        Assert.Equal("DejaVu Sans", Fonts.GetTypeface(EmbeddedFont.Name, bold: false, italic: false).FamilyName);
        Assert.Equal(File.ReadAllBytes(first), File.ReadAllBytes(second));
    }
}
