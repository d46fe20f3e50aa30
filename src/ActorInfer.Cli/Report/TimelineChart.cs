using ScottPlot;

namespace ActorInfer.Cli.Report;

/// <summary>A series drawn in the report: its panel, its legend text and its points inside the panel's limits.</summary>
internal sealed record DrawnSeries(string Panel, string Name, int Points);

/// <summary>
/// Draws a run's timeline as three stacked panels sharing the time axis: memory (budgets and bytes held per tier, GiB),
/// throughput (tokens per second over a sliding window that restarts at each pressure event, so that one phase's rate
/// is not averaged into the next), and block size (sequences) with the drops marked by the sequences they requeued.
/// Pressure events are dashed lines across the panels, labelled in the memory panel. Legends sit right of the data.
/// </summary>
internal static class TimelineChart
{
    public const int Width = 1400;
    public const int Height = 1050;
    private const double GiB = 1L << 30;
    // Room right of the data for the legends: the same on every panel, so that their time axes line up.
    private static readonly PixelPadding Padding = new(left: 90, right: 290, bottom: 50, top: 36);

    public static IReadOnlyList<DrawnSeries> Draw(RunTimeline timeline, string png, string title)
    {
        EmbeddedFont.Register();
        var drawn = new List<DrawnSeries>();
        var multiplot = new Multiplot();
        multiplot.AddPlots(3);
        var panels = multiplot.GetPlots();
        var (memory, throughput, block) = (panels[0], panels[1], panels[2]);
        var steps = timeline.Steps;
        var seconds = steps.Select(s => s.Seconds).ToArray();
        var end = Math.Max(seconds[^1], 1e-3);

        Line(memory, "memory", seconds, steps.Select(s => s.GpuBudget / GiB).ToArray(), "device budget", Colors.Blue, drawn);
        Line(memory, "memory", seconds, steps.Select(s => s.DeviceBytes / GiB).ToArray(), "device bytes held", Colors.Orange, drawn);
        Line(memory, "memory", seconds, steps.Select(s => s.CpuBudget / GiB).ToArray(), "CPU budget", Colors.Green, drawn, LinePattern.Dashed);
        if (steps.All(s => s.CpuBytes is not null))
            Line(memory, "memory", seconds, steps.Select(s => s.CpuBytes!.Value / GiB).ToArray(), "CPU bytes held", Colors.Purple, drawn);
        memory.YLabel("GiB");

        var window = Math.Max(2.0, end / 40);
        var (rateAt, rate) = Throughput(timeline, window);
        Line(throughput, "throughput", rateAt, rate, $"tokens/s ({window:0.#} s window)", Colors.Teal, drawn);
        throughput.YLabel("tokens per second");

        Line(block, "block size", seconds, steps.Select(s => (double)s.BlockSize).ToArray(), "block size", Colors.Black, drawn);
        if (timeline.Drops.Count > 0)
        {
            var at = timeline.Drops.Select(d => d.Seconds).ToArray();
            var size = timeline.Drops.Select(d => (double)BlockSizeBefore(steps, d.Seconds)).ToArray();
            var marks = block.Add.ScatterPoints(at, size, Colors.Red);
            marks.MarkerSize = 9;
            marks.MarkerShape = MarkerShape.FilledTriangleDown;
            marks.LegendText = $"drops ({timeline.Drops.Sum(d => d.Requeued)} requeued)";
            drawn.Add(new DrawnSeries("block size", marks.LegendText, at.Length));
            // Each drop named by what it requeued, while there are few enough to read.
            if (timeline.Drops.Count <= 24)
                for (var i = 0; i < at.Length; i++)
                    Label(block, at[i], size[i], $"-{timeline.Drops[i].Requeued}", Colors.Red, Alignment.LowerCenter);
        }
        block.YLabel("sequences");
        block.XLabel("seconds");

        // Room above the data for the pressure events' labels.
        var memoryTop = Top(memory) * 1.12;
        foreach (var (e, i) in timeline.Pressure.Select((e, i) => (e, i)))
        {
            foreach (var panel in panels)
            {
                var line = panel.Add.VerticalLine(e.Seconds);
                line.LineColor = Colors.Gray.WithAlpha(0.6);
                line.LinePattern = LinePattern.Dashed;
            }
            // Alternating heights keep neighbouring labels apart.
            Label(memory, e.Seconds, memoryTop * (i % 2 == 0 ? 0.99 : 0.93), e.Detail, Colors.DimGray, Alignment.UpperLeft);
        }

        multiplot.SharedAxes.ShareX(panels);
        foreach (var (panel, top) in new[] { (memory, memoryTop), (throughput, Top(throughput)), (block, Top(block)) })
        {
            panel.Font.Set(EmbeddedFont.Name);
            panel.Axes.SetLimits(0, end, 0, top);
            panel.Layout.Fixed(Padding);
            panel.ShowLegend(Edge.Right);
        }
        memory.Title(title);
        multiplot.SavePng(png, Width, Height);
        return drawn;
    }

    private static void Line(Plot plot, string panel, double[] xs, double[] ys, string name, Color color, List<DrawnSeries> drawn,
        LinePattern? pattern = null)
    {
        var line = plot.Add.ScatterLine(xs, ys, color);
        line.LegendText = name;
        line.LineWidth = 2;
        if (pattern is { } p) line.LinePattern = p;
        drawn.Add(new DrawnSeries(panel, name, ys.Count(double.IsFinite)));
    }

    private static void Label(Plot plot, double x, double y, string text, Color color, Alignment alignment)
    {
        var label = plot.Add.Text(text, x, y);
        label.LabelFontColor = color;
        label.LabelFontSize = 12;
        label.LabelFontName = EmbeddedFont.Name;
        label.LabelAlignment = alignment;
    }

    /// <summary>The panel's upper limit: its largest finite value with headroom for labels (1 when it has none).</summary>
    private static double Top(Plot plot)
    {
        var max = plot.GetPlottables().OfType<ScottPlot.Plottables.Scatter>()
            .SelectMany(s => s.Data.GetScatterPoints()).Select(p => p.Y).Where(double.IsFinite).DefaultIfEmpty(0).Max();
        return max > 0 ? max * 1.18 : 1;
    }

    private static int BlockSizeBefore(List<TimelineStep> steps, double seconds) =>
        steps.LastOrDefault(s => s.Seconds <= seconds)?.BlockSize ?? steps[0].BlockSize;

    /// <summary>
    /// Tokens per second at each step over the last <paramref name="window"/> seconds, within the phase the step is in
    /// (phases split at pressure events); a phase's first step has no rate yet.
    /// </summary>
    private static (double[] At, double[] Rate) Throughput(RunTimeline timeline, double window)
    {
        var steps = timeline.Steps;
        var boundaries = timeline.Pressure.Select(p => p.Seconds).Order().ToArray();
        int Phase(double t) => boundaries.Count(b => b <= t);
        var at = new List<double>();
        var rate = new List<double>();
        var from = 0;
        for (var i = 1; i < steps.Count; i++)
        {
            if (Phase(steps[i].Seconds) != Phase(steps[from].Seconds)) from = i;
            while (from < i && steps[i].Seconds - steps[from].Seconds > window) from++;
            var dt = steps[i].Seconds - steps[from].Seconds;
            if (from == i || dt <= 0) continue;
            at.Add(steps[i].Seconds);
            rate.Add((steps[i].Tokens - steps[from].Tokens) / dt);
        }
        return (at.ToArray(), rate.ToArray());
    }
}
