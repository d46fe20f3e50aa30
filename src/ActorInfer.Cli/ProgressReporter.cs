using Spectre.Console;

namespace ActorInfer.Cli;

/// <summary>
/// Progress of a long run: a bar on an interactive terminal, plain lines on stderr otherwise (Spectre's bar
/// prints nothing at all when output is redirected).
/// </summary>
public static class ProgressReporter
{
    public static void Run(string title, int total, Action<Action<int>> work)
    {
        if (!Console.IsErrorRedirected && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive)
        {
            AnsiConsole.Progress().AutoClear(false).Start(ctx =>
            {
                var task = ctx.AddTask(title, maxValue: Math.Max(total, 1));
                work(done => task.Value = done);
            });
            return;
        }
        var started = DateTime.UtcNow;
        var lastPrinted = -1;
        work(done =>
        {
            var percent = total == 0 ? 100 : (int)(100L * done / total);
            if (percent / 10 == lastPrinted / 10 && done != total) return;
            lastPrinted = percent;
            var elapsed = DateTime.UtcNow - started;
            Console.Error.WriteLine($"{title}: {done}/{total} ({percent}%) after {elapsed.TotalSeconds:F1} s");
        });
    }
}
