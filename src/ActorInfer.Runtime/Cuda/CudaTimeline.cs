using System.Diagnostics;
using System.Text.Json;

namespace ActorInfer.Runtime.Cuda;

/// <summary>
/// Records what ran when on each CUDA stream (timed events around each copy and each layer's compute) and on the
/// host (CPU attention), and writes it in the Chrome trace format (chrome://tracing, Perfetto). Device times are
/// exact relative to a base event; host spans are aligned to it by synchronizing the device when tracing starts.
/// </summary>
public sealed class CudaTimeline : IDisposable
{
    private readonly List<(string Lane, string Name, IntPtr Start, IntPtr End)> _device = [];
    private readonly List<(string Lane, string Name, double StartMs, double EndMs)> _host = [];
    private readonly Stopwatch _clock = new();
    private IntPtr _base;

    public bool Active { get; private set; }

    public void Start()
    {
        _base = CudaRuntime.CreateTimingEvent();
        CudaRuntime.Record(_base, CudaRuntime.ComputeStream);
        CudaRuntime.Synchronize(_base);
        _clock.Restart();
        _collections = [GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2)];
        _paused = GC.GetTotalPauseDuration();
        Active = true;
    }

    private int[] _collections = [0, 0, 0];
    private TimeSpan _paused;
    private string _gc = "";

    public void Stop()
    {
        TorchSharp.torch.cuda.synchronize();
        Active = false;
        _gc = $"garbage collections while tracing: {GC.CollectionCount(0) - _collections[0]} of gen 0, {GC.CollectionCount(1) - _collections[1]} of gen 1, " +
            $"{GC.CollectionCount(2) - _collections[2]} of gen 2, paused {(GC.GetTotalPauseDuration() - _paused).TotalMilliseconds:F2} ms";
    }

    /// <summary>
    /// Runs the recording's own code once and forgets what it recorded: the first span of each kind otherwise pays for
    /// compiling that code (hundreds of microseconds on the host, inside the traced step).
    /// </summary>
    public void Warm()
    {
        var stream = CudaRuntime.ComputeStream;
        Start();
        using (HostSpan(ComputeLane, "warm")) { }
        using (DeviceSpan(ComputeLane, "warm", stream)) { }
        Stop();
        _ = Summary();
        Forget();
    }

    /// <summary>Marks the start of a span on <paramref name="stream"/>; dispose the result after issuing the work.</summary>
    public IDisposable? DeviceSpan(string lane, string name, IntPtr stream)
    {
        if (!Active) return null;
        var start = CudaRuntime.CreateTimingEvent();
        CudaRuntime.Record(start, stream);
        return new Span(() =>
        {
            var end = CudaRuntime.CreateTimingEvent();
            CudaRuntime.Record(end, stream);
            lock (_device) _device.Add((lane, name, start, end));
        });
    }

    public IDisposable? HostSpan(string lane, string name)
    {
        if (!Active) return null;
        var start = _clock.Elapsed.TotalMilliseconds;
        return new Span(() =>
        {
            lock (_host) _host.Add((lane, name, start, _clock.Elapsed.TotalMilliseconds));
        });
    }

    public void Write(string path)
    {
        using var stream = File.Create(path);
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = false });
        w.WriteStartObject();
        w.WriteStartArray("traceEvents");
        var lanes = _device.Select(d => d.Lane).Concat(_host.Select(h => h.Lane)).Distinct().ToList();
        foreach (var (lane, i) in lanes.Select((l, i) => (l, i)))
        {
            w.WriteStartObject();
            w.WriteString("name", "thread_name");
            w.WriteString("ph", "M");
            w.WriteNumber("pid", 1);
            w.WriteNumber("tid", i);
            w.WriteStartObject("args");
            w.WriteString("name", lane);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        void Event(string lane, string name, double startMs, double endMs)
        {
            w.WriteStartObject();
            w.WriteString("name", name);
            w.WriteString("ph", "X");
            w.WriteNumber("pid", 1);
            w.WriteNumber("tid", lanes.IndexOf(lane));
            w.WriteNumber("ts", Math.Round(startMs * 1000, 1));
            w.WriteNumber("dur", Math.Round(Math.Max(endMs - startMs, 0) * 1000, 1));
            w.WriteEndObject();
        }
        foreach (var d in _device)
            Event(d.Lane, d.Name, CudaRuntime.ElapsedMs(_base, d.Start), CudaRuntime.ElapsedMs(_base, d.End));
        foreach (var h in _host) Event(h.Lane, h.Name, h.StartMs, h.EndMs);
        w.WriteEndArray();
        w.WriteEndObject();
    }

    /// <summary>Busy milliseconds per lane, and how much of the copy lanes' time overlapped compute.</summary>
    public string Summary()
    {
        var spans = _device.Select(d => (d.Lane, Start: CudaRuntime.ElapsedMs(_base, d.Start), End: CudaRuntime.ElapsedMs(_base, d.End)))
            .Concat(_host.Select(h => (h.Lane, Start: h.StartMs, End: h.EndMs))).ToList();
        if (spans.Count == 0) return "no spans";
        var wall = spans.Max(s => s.End) - spans.Min(s => s.Start);
        var compute = spans.Where(s => s.Lane == ComputeLane).ToList();
        var lines = new List<string> { $"step wall {wall:F1} ms" };
        foreach (var lane in spans.Select(s => s.Lane).Distinct())
        {
            var own = spans.Where(s => s.Lane == lane).ToList();
            var busy = own.Sum(s => s.End - s.Start);
            var overlapped = lane == ComputeLane ? 0 : own.Sum(s => compute.Sum(c => Math.Max(0, Math.Min(s.End, c.End) - Math.Max(s.Start, c.Start))));
            lines.Add($"{lane}: {own.Count} spans, busy {busy:F1} ms" + (lane == ComputeLane ? "" : $", {overlapped:F1} ms of it during compute"));
        }
        if (_gc.Length > 0) lines.Add(_gc);
        return string.Join("; ", lines);
    }

    public const string ComputeLane = "compute stream";

    /// <summary>The lanes of the host's time: per schedule position (and a step's start), and the compute within a position.</summary>
    public const string HostPositionsLane = "host: positions", HostComputeLane = "host: compute";

    public void Dispose() => Forget();

    /// <summary>Frees the recorded spans' events and drops every span; <see cref="Start"/> begins anew.</summary>
    private void Forget()
    {
        _host.Clear();
        _gc = "";
        foreach (var d in _device)
        {
            CudaRuntime.DestroyEvent(d.Start);
            CudaRuntime.DestroyEvent(d.End);
        }
        _device.Clear();
        if (_base != IntPtr.Zero) CudaRuntime.DestroyEvent(_base);
        _base = IntPtr.Zero;
    }

    private sealed class Span(Action end) : IDisposable
    {
        public void Dispose() => end();
    }
}
