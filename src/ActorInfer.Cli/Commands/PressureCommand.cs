using ActorInfer.Planning;
using System.CommandLine;
using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Control;

namespace ActorInfer.Cli.Commands;

/// <summary>`actorinfer pressure`: an operator budget command for a running node's memory-pressure actor.</summary>
public static class PressureCommand
{
    public static Command Create()
    {
        var command = new Command("pressure", "Set (or clear) a tier's memory budget on a running node.");
        var node = new Option<string>("--node") { Description = "The node's URL (its HTTP gateway, with --api-key) or its data folder (the control spool DATA/control/).", Required = true };
        var apiKey = new Option<string?>("--api-key") { Description = "An admin key of the node's gateway (with a URL); default: ACTORINFER_API_KEY." };
        var tier = new Option<string>("--tier") { Description = "gpu, cpu or disk.", Required = true };
        tier.OneOf("gpu", "cpu", "disk");
        var budget = new Option<string?>("--budget") { Description = "The budget: bytes, 512MiB, 8GiB ...; 'clear' returns the tier to its configured or measured budget." };
        command.Options.Add(node);
        command.Options.Add(tier);
        command.Options.Add(budget);
        command.Options.Add(apiKey);
        command.SetAction(parse =>
        {
            var dataDir = parse.GetValue(node)!;
            var text = parse.GetValue(budget) ?? throw new CliException("--budget is required (a size, or 'clear')", 2);
            long? bytes = text == "clear" ? null
                : ByteSize.TryParse(text, out var b, out var problem) ? b
                : throw new CliException($"--budget: {problem}; or 'clear'", 2);
            if (dataDir.StartsWith("http://", StringComparison.Ordinal) || dataDir.StartsWith("https://", StringComparison.Ordinal))
                return ThroughGateway(dataDir, parse.GetValue(apiKey) ?? Environment.GetEnvironmentVariable("ACTORINFER_API_KEY"),
                    parse.GetValue(tier)!, bytes);
            if (!Directory.Exists(dataDir)) throw new CliException($"--node: the data folder '{dataDir}' does not exist");
            var path = ControlProtocol.WriteBudgetCommand(dataDir, ControlProtocol.ParseTier(parse.GetValue(tier)!), bytes);
            Console.WriteLine($"pressure: {parse.GetValue(tier)} budget {(bytes is { } v ? ByteSize.FormatBinary(v) : "cleared")} sent ({path})");
            return 0;
        });
        return command;
    }

    /// <summary>POST /admin/pressure on the node's gateway; the gateway's error message is shown as it is.</summary>
    private static int ThroughGateway(string url, string? key, string tier, long? bytes)
    {
        if (string.IsNullOrEmpty(key)) throw new CliException("--node URL needs an admin key: --api-key or ACTORINFER_API_KEY", 2);
        using var client = new HttpClient { BaseAddress = new Uri(url.TrimEnd('/') + "/"), Timeout = TimeSpan.FromSeconds(30) };
        client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", key);
        var body = System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["tier"] = tier,
            ["budget"] = bytes is { } v ? v : "clear",
        });
        HttpResponseMessage response;
        try
        {
            response = client.PostAsync("admin/pressure", new StringContent(body, System.Text.Encoding.UTF8, "application/json")).GetAwaiter().GetResult();
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            throw new CliException($"--node {url}: {ex.Message}");
        }
        using (response)
        {
            var answer = response.Content.ReadAsStringAsync().GetAwaiter().GetResult();
            if (!response.IsSuccessStatusCode) throw new CliException($"the node answered {(int)response.StatusCode}: {answer}");
            Console.WriteLine($"pressure: {tier} budget {(bytes is { } b ? ByteSize.FormatBinary(b) : "cleared")} sent to {url}");
            return 0;
        }
    }
}
