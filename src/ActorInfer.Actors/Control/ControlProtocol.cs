using System.Text.Json;
using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Memory;
using ActorInfer.Model.Generation;
using Akka.Actor;

namespace ActorInfer.Actors.Control;

/// <summary>
/// The node's local control channel until the HTTP gateway exists: spool folders under the data folder.
/// <list type="bullet">
/// <item><c>inbox/JOB.jsonl</c>: a job, one OpenAI completion request per line. Write it under another name and
/// rename it into place (a half-written file would be read as is). Once the job is persisted the file moves to
/// <c>accepted/</c>; results appear as <c>results/JOB.jsonl</c>, one line per input line, in input order.</item>
/// <item><c>control/NAME.json</c>: an operator command, <c>{"set-budget": {"tier": "gpu", "bytes": 8589934592}}</c>
/// or <c>{"clear-budget": {"tier": "gpu"}}</c>, handed to the memory-pressure actor and deleted; a bad command
/// is renamed to <c>NAME.json.rejected</c> with the reason beside it in <c>NAME.json.error</c>.</item>
/// </list>
/// </summary>
public static class ControlProtocol
{
    public sealed record Settings(string InboxDir, string AcceptedDir, string ControlDir, TimeSpan PollInterval, long RequestSeed, TimeSpan AskTimeout)
    {
        public static Settings From(ActorInferSettings s) =>
            new(s.InboxDir, s.AcceptedDir, s.ControlDir, s.Control.PollInterval, s.RequestSeed, TimeSpan.FromSeconds(30));
    }

    /// <summary>Reads the spool folders now instead of at the next tick.</summary>
    public sealed record PollNow
    {
        public static readonly PollNow Instance = new();
    }

    public static Props Props(Settings settings, IActorRef jobs, IActorRef memory, CompletionFactory factory) =>
        Akka.Actor.Props.Create(() => new ControlActor(settings, jobs, memory, factory));

    /// <summary>Writes an operator budget command into a node's control spool (what `actorinfer pressure` does).</summary>
    /// <param name="bytes">The budget; null withdraws the operator's budget of that tier.</param>
    public static string WriteBudgetCommand(string dataDir, Tier tier, long? bytes)
    {
        var dir = Path.Combine(dataDir, "control");
        Directory.CreateDirectory(dir);
        var name = $"{DateTime.UtcNow:yyyyMMddTHHmmssfff}-{Guid.NewGuid():N}.json";
        var tierName = tier.ToString().ToLowerInvariant();
        var json = bytes is { } b
            ? JsonSerializer.Serialize(new Dictionary<string, object> { ["set-budget"] = new Dictionary<string, object> { ["tier"] = tierName, ["bytes"] = b } })
            : JsonSerializer.Serialize(new Dictionary<string, object> { ["clear-budget"] = new Dictionary<string, object> { ["tier"] = tierName } });
        var temp = Path.Combine(dir, name + ".tmp");
        File.WriteAllText(temp, json);
        var path = Path.Combine(dir, name);
        File.Move(temp, path);
        return path;
    }

    /// <summary>Parses a control file into the memory actor's command; throws <see cref="FormatException"/> saying what is wrong.</summary>
    public static MemoryProtocol.ICommand ParseCommand(string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new FormatException("a control command must be a JSON object");
            if (root.TryGetProperty("set-budget", out var set))
            {
                var tier = ParseTier(set);
                if (!set.TryGetProperty("bytes", out var bytes) || !bytes.TryGetInt64(out var value) || value < 0)
                    throw new FormatException("set-budget.bytes must be a non-negative integer");
                return new MemoryProtocol.SetBudget(tier, value);
            }
            if (root.TryGetProperty("clear-budget", out var clear))
                return new MemoryProtocol.ClearBudget(ParseTier(clear));
            throw new FormatException("a control command is {\"set-budget\": {...}} or {\"clear-budget\": {...}}");
        }
        catch (JsonException ex)
        {
            throw new FormatException($"not valid JSON: {ex.Message}");
        }
    }

    public static Tier ParseTier(string name) => name.ToLowerInvariant() switch
    {
        "gpu" => Tier.Gpu,
        "cpu" => Tier.Cpu,
        "disk" => Tier.Disk,
        _ => throw new FormatException($"tier '{name}' is not gpu, cpu or disk"),
    };

    private static Tier ParseTier(JsonElement command) =>
        command.ValueKind == JsonValueKind.Object && command.TryGetProperty("tier", out var t) && t.ValueKind == JsonValueKind.String
            ? ParseTier(t.GetString()!)
            : throw new FormatException("the command needs a \"tier\": \"gpu\" | \"cpu\" | \"disk\"");
}
