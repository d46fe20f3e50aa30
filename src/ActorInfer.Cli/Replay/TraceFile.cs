using System.Globalization;

namespace ActorInfer.Cli.Replay;

/// <summary>One request of a trace: when it arrived (seconds after the trace's first), its prompt and output lengths.</summary>
/// <param name="Line">Its line in the file (the header is line 1).</param>
public sealed record TraceRequest(double At, int ContextTokens, int GeneratedTokens, int Line);

/// <summary>A trace file that cannot be replayed; the message names the file and the line.</summary>
public sealed class TraceFileException(string message) : Exception(message);

/// <summary>
/// An Azure LLM inference trace (2023) as CSV: a header naming <c>TIMESTAMP</c>, <c>ContextTokens</c> and
/// <c>GeneratedTokens</c> (in any order, other columns ignored), then one request per line in arrival order. A timestamp is
/// a date and time (<c>2023-11-16 18:15:46.6805900</c>) or seconds; the token counts are non-negative integers.
/// </summary>
public static class TraceFile
{
    private static readonly string[] Required = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"];

    /// <param name="duration">Only the requests that arrived within this much trace time of the first; null: all.</param>
    public static IReadOnlyList<TraceRequest> Read(string path, TimeSpan? duration = null)
    {
        if (!File.Exists(path)) throw new TraceFileException($"--trace {path}: the file does not exist");
        using var reader = new StreamReader(path);
        var header = reader.ReadLine();
        if (header is null) throw new TraceFileException($"{path}:1: the file is empty (expected a header: {string.Join(",", Required)})");
        var columns = header.TrimStart('\uFEFF').Split(',').Select(c => c.Trim()).ToArray();
        var index = new int[Required.Length];
        for (var c = 0; c < Required.Length; c++)
        {
            index[c] = Array.FindIndex(columns, h => string.Equals(h, Required[c], StringComparison.OrdinalIgnoreCase));
            if (index[c] < 0)
                throw new TraceFileException($"{path}:1: the header has no column '{Required[c]}' (it has {string.Join(", ", columns.Select(h => $"'{h}'"))}; " +
                    $"expected {string.Join(",", Required)})");
        }
        var requests = new List<TraceRequest>();
        double? first = null;
        var previous = double.MinValue;
        var number = 1;
        while (reader.ReadLine() is { } line)
        {
            number++;
            if (line.Trim().Length == 0) continue;
            var fields = line.Split(',');
            if (fields.Length < columns.Length)
                throw new TraceFileException($"{path}:{number}: {fields.Length} fields where the header has {columns.Length}");
            var at = Timestamp(fields[index[0]].Trim()) ?? throw new TraceFileException(
                $"{path}:{number}: TIMESTAMP '{fields[index[0]].Trim()}' is neither a date and time (2023-11-16 18:15:46.6805900) nor seconds");
            if (at < previous)
                throw new TraceFileException($"{path}:{number}: the timestamp {fields[index[0]].Trim()} is before the previous line's: the trace must be sorted by TIMESTAMP");
            previous = at;
            first ??= at;
            var offset = at - first.Value;
            if (duration is { } d && offset >= d.TotalSeconds) break;
            requests.Add(new TraceRequest(offset, Count(fields[index[1]], "ContextTokens"), Count(fields[index[2]], "GeneratedTokens"), number));

            int Count(string text, string column) =>
                int.TryParse(text.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var n)
                    ? n
                    : throw new TraceFileException($"{path}:{number}: {column} '{text.Trim()}' is not a non-negative integer");
        }
        if (requests.Count == 0) throw new TraceFileException($"{path}: no requests{(duration is null ? "" : " within --duration")}");
        return requests;
    }

    /// <summary>Seconds since an arbitrary origin: a date and time (UTC as written), or a number of seconds.</summary>
    private static double? Timestamp(string text)
    {
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds)) return seconds;
        return DateTime.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var time)
            ? (time - DateTime.UnixEpoch).TotalSeconds
            : null;
    }

    /// <summary>A duration such as 60, 60s, 10m or 1h (bare numbers are seconds).</summary>
    public static TimeSpan ParseDuration(string text, string option)
    {
        var t = text.Trim().ToLowerInvariant();
        var (number, unit) = t.EndsWith("ms", StringComparison.Ordinal) ? (t[..^2], 0.001)
            : t.EndsWith('s') ? (t[..^1], 1.0)
            : t.EndsWith('m') ? (t[..^1], 60.0)
            : t.EndsWith('h') ? (t[..^1], 3600.0)
            : (t, 1.0);
        return double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v > 0 && double.IsFinite(v)
            ? TimeSpan.FromSeconds(v * unit)
            : throw new CliException($"{option}: '{text}' is not a duration (60, 60s, 10m, 1h)", 2);
    }
}
