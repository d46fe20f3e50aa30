using System.Diagnostics;
using System.Text.Json;

namespace ActorInfer.Cli.Running;

/// <summary>
/// Records a run's timeline into <c>DIR/timeline.jsonl</c>: after every decoding step the budgets, the bytes the
/// device tier holds, the block size and the tokens generated so far; each pressure event, policy and batch drop; and
/// each message of the tensor thread that took 200 ms or more ("slow", its end: what it was and how long).
/// `actorinfer report --run DIR` draws it.
/// </summary>
public sealed class RunRecorder : IDisposable
{
    public const string FileName = "timeline.jsonl";
    private readonly StreamWriter _writer;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly Lock _gate = new();
    private bool _disposed;

    public RunRecorder(string dir)
    {
        Directory.CreateDirectory(dir);
        _writer = new StreamWriter(Path.Combine(dir, FileName)) { AutoFlush = false };
    }

    public void Sample(long gpuBudget, long cpuBudget, long deviceBytes, long cpuBytes, int blockSize, long tokens) =>
        Write(new Dictionary<string, object>
        {
            ["t_ms"] = Math.Round(_clock.Elapsed.TotalMilliseconds, 2), ["kind"] = "step", ["gpu_budget"] = gpuBudget,
            ["cpu_budget"] = cpuBudget, ["device_bytes"] = deviceBytes, ["cpu_bytes"] = cpuBytes, ["block_size"] = blockSize, ["tokens"] = tokens,
        });

    public void Event(string kind, string detail) =>
        Write(new Dictionary<string, object> { ["t_ms"] = Math.Round(_clock.Elapsed.TotalMilliseconds, 2), ["kind"] = kind, ["detail"] = detail });

    private void Write(Dictionary<string, object> line)
    {
        var text = JsonSerializer.Serialize(line);
        // Actors may still report (a slow message) while the command ends: nothing is written after the file closed.
        lock (_gate)
            if (!_disposed) _writer.WriteLine(text);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            _writer.Dispose();
        }
    }
}
