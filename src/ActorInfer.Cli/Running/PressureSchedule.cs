using System.Text.Json;
using ActorInfer.Planning;

namespace ActorInfer.Cli.Running;

/// <summary>One line of a pressure schedule: when (milliseconds from the start, or a decoding step), which tier ("gpu" or "cpu"), how much.</summary>
public sealed record PressureLine(int Line, long? AtMs, int? AtStep, string Tier, long Budget);

/// <summary>
/// A pressure schedule: JSONL lines <c>{"at_ms": T | "at_step": K, "tier": "gpu"|"cpu", "budget": "6GiB"}</c>.
/// Every problem names the line and the field; nothing runs on a bad schedule.
/// </summary>
public static class PressureSchedule
{
    public static IReadOnlyList<PressureLine> Read(string path)
    {
        if (!File.Exists(path)) throw new CliException($"--pressure: file not found: {path}");
        var events = new List<PressureLine>();
        var line = 0;
        foreach (var raw in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(raw)) continue;
            events.Add(Parse(raw, line, path));
        }
        if (events.Count == 0) throw new CliException($"--pressure: {path} holds no events");
        return events;
    }

    private static PressureLine Parse(string raw, int line, string path)
    {
        CliException Bad(string message) => new($"--pressure: {path} line {line}: {message}");
        JsonElement root;
        try
        {
            using var doc = JsonDocument.Parse(raw);
            root = doc.RootElement.Clone();
        }
        catch (JsonException ex)
        {
            throw Bad($"not valid JSON ({ex.Message})");
        }
        if (root.ValueKind != JsonValueKind.Object) throw Bad("each line must be a JSON object");
        foreach (var p in root.EnumerateObject())
            if (p.Name is not ("at_ms" or "at_step" or "tier" or "budget")) throw Bad($"unknown field '{p.Name}'");
        long? atMs = null;
        int? atStep = null;
        if (root.TryGetProperty("at_ms", out var ms))
            atMs = ms.ValueKind == JsonValueKind.Number && ms.TryGetInt64(out var v) && v >= 0 ? v : throw Bad("'at_ms' must be a non-negative integer");
        if (root.TryGetProperty("at_step", out var st))
            atStep = st.ValueKind == JsonValueKind.Number && st.TryGetInt32(out var k) && k >= 0 ? k : throw Bad("'at_step' must be a non-negative integer");
        if ((atMs is null) == (atStep is null)) throw Bad("give exactly one of 'at_ms' and 'at_step'");
        var tier = root.TryGetProperty("tier", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : throw Bad("'tier' must be \"gpu\" or \"cpu\"");
        if (tier is not ("gpu" or "cpu")) throw Bad($"'tier' must be \"gpu\" or \"cpu\" (got \"{tier}\")");
        if (!root.TryGetProperty("budget", out var b)) throw Bad("'budget' is required");
        long budget;
        if (b.ValueKind == JsonValueKind.Number && b.TryGetInt64(out var bytes)) budget = bytes;
        else if (b.ValueKind == JsonValueKind.String)
            budget = ByteSize.TryParse(b.GetString(), out var parsed, out var problem) ? parsed : throw Bad($"'budget': {problem}");
        else throw Bad("'budget' must be a byte count or a size such as \"6GiB\"");
        if (budget <= 0) throw Bad("'budget' must be positive");
        return new PressureLine(line, atMs, atStep, tier, budget);
    }
}
