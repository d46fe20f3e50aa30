using System.Collections.Concurrent;
using System.Diagnostics;

namespace ActorInfer.TestSupport;

/// <summary>
/// A real `actorinfer` process (the CLI built beside the tests, which reference its project), with its output read
/// line by line.
/// </summary>
public sealed class NodeProcess : IDisposable
{
    private readonly Process _process;
    private readonly BlockingCollection<string> _lines = new();
    private readonly List<string> _seen = [];

    public NodeProcess(params string[] args) : this(new Dictionary<string, string>(), args)
    {
    }

    /// <summary>The program with <paramref name="environment"/> added to the test's own.</summary>
    public NodeProcess(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = TestPaths.RepositoryRoot,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "actorinfer.dll"));
        foreach (var a in args) start.ArgumentList.Add(a);
        foreach (var key in new[] { "ACTORINFER_MODEL", "ACTORINFER_DATA_DIR", "ACTORINFER_DEVICE", "ACTORINFER_DTYPE", "ACTORINFER_PERSISTENCE",
                     "ACTORINFER_POSTGRES_CONNECTION" })
            start.Environment.Remove(key);
        foreach (var (key, value) in environment) start.Environment[key] = value;
        _process = new Process { StartInfo = start };
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) _lines.Add(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) _lines.Add("stderr: " + e.Data); };
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public IReadOnlyList<string> Output => _seen;

    /// <summary>The process id (what a node writes into its data folder's lock).</summary>
    public int Id => _process.Id;

    /// <summary>Reads output until a line matches; fails with everything read when the process ends or time runs out.</summary>
    public string WaitForLine(Func<string, bool> match, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || !_lines.TryTake(out var line, left < TimeSpan.FromMilliseconds(500) ? left : TimeSpan.FromMilliseconds(500)))
            {
                if (left > TimeSpan.Zero && _process.HasExited)
                {
                    // Exit can be seen before the last output lines are delivered; the parameterless wait drains
                    // the redirected streams.
                    _process.WaitForExit();
                    if (_lines.Count > 0) continue;
                }
                if (left <= TimeSpan.Zero || _process.HasExited && _lines.Count == 0)
                    throw new TimeoutException($"no matching line (exited: {_process.HasExited}); output:\n{string.Join("\n", _seen)}");
                continue;
            }
            _seen.Add(line);
            if (match(line)) return line;
        }
    }

    /// <summary>
    /// Reads output until every pattern has matched a line, in any order: stdout and stderr are read on their own
    /// threads, so lines the program wrote to both arrive in either order.
    /// </summary>
    public void WaitForLines(TimeSpan timeout, params Func<string, bool>[] matches)
    {
        var deadline = DateTime.UtcNow + timeout;
        var left = new List<Func<string, bool>>(matches);
        while (left.Count > 0)
        {
            var remaining = deadline - DateTime.UtcNow;
            var line = WaitForLine(l => left.Any(m => m(l)), remaining > TimeSpan.Zero ? remaining : TimeSpan.Zero);
            left.RemoveAll(m => m(line));
        }
    }

    /// <summary>Every line read so far, and every line the process has written that was not read yet.</summary>
    public IReadOnlyList<string> AllOutput()
    {
        while (_lines.TryTake(out var line)) _seen.Add(line);
        return _seen;
    }

    public int WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout)) throw new TimeoutException("the process did not exit");
        // The parameterless wait drains the redirected streams: every line is read once it returns.
        _process.WaitForExit();
        return _process.ExitCode;
    }

    /// <summary>Runs the program to its end and returns its exit status and every line it wrote (stderr lines prefixed).</summary>
    public static (int ExitCode, IReadOnlyList<string> Output) Run(TimeSpan timeout, params string[] args)
    {
        using var process = new NodeProcess(args);
        var code = process.WaitForExit(timeout);
        return (code, process.AllOutput().ToList());
    }

    /// <summary>SIGTERM, as a service manager stops a node: the program's own shutdown runs.</summary>
    public void Terminate()
    {
        using var kill = Process.Start("kill", ["-TERM", $"{_process.Id}"]);
        kill.WaitForExit();
        if (kill.ExitCode != 0) throw new InvalidOperationException($"kill -TERM {_process.Id} failed with exit {kill.ExitCode}");
    }

    /// <summary>SIGSTOP: the process freezes (heartbeats stop) until <see cref="Continue"/>.</summary>
    public void Stop() => Signal("STOP");

    /// <summary>SIGCONT after <see cref="Stop"/>.</summary>
    public void Continue() => Signal("CONT");

    private void Signal(string name)
    {
        using var kill = Process.Start("kill", [$"-{name}", $"{_process.Id}"]);
        kill.WaitForExit();
        if (kill.ExitCode != 0) throw new InvalidOperationException($"kill -{name} {_process.Id} failed with exit {kill.ExitCode}");
    }

    /// <summary>Whether the process has ended.</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>SIGKILL: no shutdown hooks, no flush; what the journal holds is all that survives.</summary>
    public void Kill()
    {
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
    }

    public void Dispose()
    {
        if (!_process.HasExited) Kill();
        _process.Dispose();
    }
}
