using System.Globalization;
using Spectre.Console;

namespace ActorInfer.Cli;

/// <summary>
/// Progress of a long run: a bar on an interactive terminal, plain lines on stderr otherwise (Spectre's bar
/// prints nothing at all when output is redirected). Both say the tokens per second so far and the time left.
/// </summary>
public static class ProgressReporter
{
    /// <param name="work">Runs the work, reporting the items done and the tokens generated so far.</param>
    public static void Run(string title, int total, Action<Action<int, long>> work)
    {
        var started = DateTime.UtcNow;
        if (!Console.IsErrorRedirected && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive)
        {
            AnsiConsole.Progress().AutoClear(false).Start(ctx =>
            {
                var task = ctx.AddTask(title, maxValue: Math.Max(total, 1));
                work((done, tokens) =>
                {
                    task.Value = done;
                    task.Description = Markup.Escape(Line(title, done, total, tokens, DateTime.UtcNow - started));
                });
            });
            return;
        }
        var lastPrinted = -1;
        work((done, tokens) =>
        {
            var percent = total == 0 ? 100 : (int)(100L * done / total);
            if (percent / 10 == lastPrinted / 10 && done != total) return;
            lastPrinted = percent;
            Console.Error.WriteLine(Line(title, done, total, tokens, DateTime.UtcNow - started));
        });
    }

    /// <summary>"generate: 4/8 (50%) after 2.0 s, 64.0 tokens/s, about 2 s left" (the time left from the rate of items so far).</summary>
    public static string Line(string title, int done, int total, long tokens, TimeSpan elapsed)
    {
        var percent = total == 0 ? 100 : (int)(100L * done / total);
        var seconds = elapsed.TotalSeconds;
        var rate = seconds > 0 ? tokens / seconds : 0;
        var left = done >= total ? "done"
            : done == 0 ? "time left not known yet"
            : $"about {Duration(seconds * (total - done) / done)} left";
        return string.Create(CultureInfo.InvariantCulture, $"{title}: {done}/{total} ({percent}%) after {seconds:F1} s, {rate:F1} tokens/s, {left}");
    }

    private static string Duration(double seconds) => seconds switch
    {
        < 90 => string.Create(CultureInfo.InvariantCulture, $"{Math.Ceiling(seconds):F0} s"),
        < 5400 => string.Create(CultureInfo.InvariantCulture, $"{Math.Ceiling(seconds / 60):F0} min"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{seconds / 3600:F1} h"),
    };
}
