using ActorInfer.Cli.Report;
using ScottPlot;

namespace ActorInfer.Cli.Replay;

/// <summary>
/// A replay's picture: above, the distribution of the time to first token per tenant (the share of its requests answered
/// within each time); below, the memory each model held on the compute tier over the run (solid) with the budget the GPU
/// arbiter gave it (dashed), and on a CUDA node the device's own used memory and its size. Drawn with the embedded font,
/// so that a machine without fonts draws the same.
/// </summary>
internal static class ReplayChart
{
    private const int Width = 1400;
    private const int Height = 900;
    private const double MiB = 1L << 20;
    private static readonly Color[] Palette = [Colors.Blue, Colors.OrangeRed, Colors.Green, Colors.Purple, Colors.Teal, Colors.Brown];
    private static readonly PixelPadding Padding = new(left: 90, right: 290, bottom: 60, top: 40);

    public static void Draw(IReadOnlyList<ReplayTenant> tenants, ReplayRun.Result result, string png, string title)
    {
        EmbeddedFont.Register();
        var multiplot = new Multiplot();
        multiplot.AddPlots(2);
        var (ttft, memory) = (multiplot.GetPlots()[0], multiplot.GetPlots()[1]);
        foreach (var (tenant, i) in tenants.Select((t, i) => (t, i)))
        {
            var color = Palette[i % Palette.Length];
            var times = result.Requests.Where(r => r.Tenant == tenant.Model && r.Outcome.Completed).Select(r => r.Outcome.Ttft!.Value).Order().ToArray();
            if (times.Length > 0)
            {
                var share = Enumerable.Range(1, times.Length).Select(k => (double)k / times.Length).ToArray();
                var cdf = ttft.Add.ScatterLine(times, share, color);
                cdf.LegendText = $"{tenant.Model} ({times.Length} requests)";
                cdf.LineWidth = 2;
            }
        }
        // Every model the node reports, a job's model that no trace feeds too; the replayed ones first, in their colours.
        var models = tenants.Select(t => t.Model).Concat(result.Memory.SelectMany(s => s.Models.Keys)).Distinct().ToArray();
        foreach (var (model, i) in models.Select((m, i) => (m, i)))
        {
            var color = Palette[i % Palette.Length];
            var samples = result.Memory.Where(s => s.Models.ContainsKey(model)).ToArray();
            if (samples.Length == 0) continue;
            var at = samples.Select(s => s.At).ToArray();
            var held = memory.Add.ScatterLine(at, samples.Select(s => s.Models[model].Held / MiB).ToArray(), color);
            held.LegendText = $"{model} held";
            held.LineWidth = 2;
            var budget = memory.Add.ScatterLine(at, samples.Select(s => s.Models[model].Budget / MiB).ToArray(), color);
            budget.LegendText = $"{model} budget (arbiter)";
            budget.LinePattern = LinePattern.Dashed;
            budget.LineWidth = 2;
        }
        // The GPU as the device reports it (the CUDA context and the caching allocator's reserve included), where the node
        // reports it, and its size.
        var reported = result.Memory.Where(s => s.Device is not null).ToArray();
        if (reported.Length > 0)
        {
            var used = memory.Add.ScatterLine(reported.Select(s => s.At).ToArray(), reported.Select(s => s.Device!.Value.Used / MiB).ToArray(), Colors.Black);
            used.LegendText = "the device's own used memory";
            used.LineWidth = 2;
            var total = memory.Add.HorizontalLine(reported[0].Device!.Value.Total / MiB, 1, Colors.Gray, LinePattern.Dotted);
            total.LegendText = "the device's memory";
        }
        ttft.XLabel("time to first token (s)");
        ttft.YLabel("share of requests");
        ttft.Title(title);
        memory.Title("memory held per model (solid) and the GPU arbiter's budget for it (dashed)" +
                     (reported.Length > 0 ? "; the device's own used memory (black)" : ""));
        memory.XLabel("seconds into the replay (traces: Azure LLM inference trace 2023, CC-BY 4.0; Patel et al., ISCA 2024)");
        memory.YLabel($"MiB on the {result.ComputeTier ?? "compute"} tier");
        foreach (var panel in new[] { ttft, memory })
        {
            panel.Font.Set(EmbeddedFont.Name);
            panel.Layout.Fixed(Padding);
            panel.ShowLegend(Edge.Right);
            panel.Axes.AutoScale();
        }
        multiplot.SavePng(png, Width, Height);
    }
}
