using System.CommandLine;
using System.Text.Json;
using ActorInfer.Actors.Control;
using ActorInfer.Actors.Memory;
using ActorInfer.Cli;
using ActorInfer.Cli.Commands;
using ActorInfer.Cli.Running;

namespace ActorInfer.Gateway.Tests;

/// <summary>
/// One size string read in every place a size is read (the policy flags of `generate` and `bench`, `plan`'s flags,
/// `pressure --budget`, a configuration key, a pressure schedule file, the admin pressure route) gives the same
/// bytes, or the same refusal in every place.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class ByteSizeEverywhereTests(GatewayFixture node)
{
    public static TheoryData<string, long?, string?> Table => new()
    {
        { "16GB", 16_000_000_000, null },
        { "16 gb", 16_000_000_000, null },
        { "16GiB", 16L << 30, null },
        { "1.5 KiB", 1536, null },
        { "512mib", 512L << 20, null },
        { "2kb", 2_000, null },
        { "1.5TB", 1_500_000_000_000, null },
        { "1000000", 1_000_000, null },
        { "4096B", 4096, null },
        { "1e9", 1_000_000_000, null },
        // A bare unit letter means 10^9 to some tools and 2^30 to others: refused, with both spellings suggested.
        { "8G", null, "write 8GB (8 x 10^9 bytes) or 8GiB (8 x 2^30 bytes)" },
        { "512M", null, "write 512MB (512 x 10^6 bytes) or 512MiB (512 x 2^20 bytes)" },
        { "16 parsecs", null, "is not a size" },
        { "-1GB", null, "is negative" },
    };

    [Theory]
    [MemberData(nameof(Table))]
    public async Task A_size_reads_the_same_everywhere(string text, long? bytes, string? refusal)
    {
        var readings = new Dictionary<string, (long? Bytes, string Error)>
        {
            ["generate/bench --gpu-mem"] = PolicyFlag(text),
            ["plan --gpu-mem"] = PlanFlag(text),
            ["pressure --budget"] = PressureFlag(text),
            ["actorinfer.memory.gpu-budget"] = ConfigKey(text),
            ["--pressure file budget"] = ScheduleFile(text),
            ["POST /admin/pressure"] = await Route(text),
        };
        foreach (var (place, reading) in readings)
        {
            if (bytes is { } expected)
            {
                Assert.True(reading.Bytes == expected, $"{place}: expected {expected} bytes, got {reading.Bytes} ({reading.Error})");
            }
            else
            {
                Assert.True(reading.Bytes is null, $"{place}: expected a refusal, got {reading.Bytes} bytes");
                Assert.True(reading.Error.Contains(refusal!, StringComparison.Ordinal), $"{place}: expected '{refusal}' in: {reading.Error}");
            }
        }
    }

    private static (long?, string) PolicyFlag(string text)
    {
        var options = new PolicyOptions();
        var command = new Command("generate");
        foreach (var o in options.All()) command.Options.Add(o);
        var parse = command.Parse([$"--gpu-mem={text}"]);
        Assert.Empty(parse.Errors);
        try
        {
            return (options.Read(parse).GpuMem, "");
        }
        catch (CliException ex)
        {
            return (null, ex.Message);
        }
    }

    private static (long?, string) PlanFlag(string text)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var root = new RootCommand("test") { PlanCommand.Create(output) };
        var code = CliRunner.Run(root, ["plan", "--model", "opt-125m", "--prompt-len", "8", "--gen-len", "4", $"--gpu-mem={text}",
            "--gpu-batch-size", "1", "--num-gpu-batches", "1", "--percent", "0", "100", "0", "100", "0", "100", "--json"], error);
        if (code != 0) return (null, error.ToString());
        return (JsonDocument.Parse(output.ToString()).RootElement.GetProperty("budget_bytes").GetProperty("gpu").GetInt64(), "");
    }

    private static (long?, string) PressureFlag(string text)
    {
        var dir = GatewayFixture.TempDir();
        var error = new StringWriter();
        var root = new RootCommand("test") { PressureCommand.Create() };
        var code = CliRunner.Run(root, ["pressure", "--node", dir, "--tier", "gpu", $"--budget={text}"], error);
        if (code != 0) return (null, error.ToString());
        var file = Directory.GetFiles(Path.Combine(dir, "control")).Single();
        return (((MemoryProtocol.SetBudget)ControlProtocol.ParseCommand(File.ReadAllText(file))).Bytes, "");
    }

    private static (long?, string) ConfigKey(string text)
    {
        var dir = GatewayFixture.TempDir();
        var config = Path.Combine(dir, "node.conf");
        File.WriteAllText(config, $$"""actorinfer { model = "opt-125m", memory.gpu-budget = "{{text}}" }""");
        try
        {
            var (settings, _) = NodeCommand.LoadSettings(config, new NodeCommand.NodeFlags(DataDir: dir), new Dictionary<string, string?>());
            return (settings.Memory.GpuBudget, "");
        }
        catch (CliException ex)
        {
            return (null, ex.Message);
        }
    }

    private static (long?, string) ScheduleFile(string text)
    {
        var file = Path.Combine(GatewayFixture.TempDir(), "pressure.jsonl");
        File.WriteAllText(file, JsonSerializer.Serialize(new { at_step = 1, tier = "gpu", budget = text }) + "\n");
        try
        {
            return (PressureSchedule.Read(file).Single().Budget, "");
        }
        catch (CliException ex)
        {
            return (null, ex.Message);
        }
    }

    /// <summary>The disk tier's budget: the fixture's node plans nothing on disk, so the other tests are not disturbed.</summary>
    private async Task<(long?, string)> Route(string text)
    {
        using var admin = node.Client(GatewayFixture.AdminKey);
        try
        {
            using var response = await admin.PostAsync("/admin/pressure", GatewayFixture.Json(JsonSerializer.Serialize(new { tier = "disk", budget = text })));
            var body = await response.Content.ReadAsStringAsync();
            if ((int)response.StatusCode != 200) return (null, JsonDocument.Parse(body).RootElement.GetProperty("error").GetProperty("message").GetString()!);
            return (JsonDocument.Parse(body).RootElement.GetProperty("budgets").GetProperty("disk").GetInt64(), "");
        }
        finally
        {
            await admin.PostAsync("/admin/pressure", GatewayFixture.Json("""{"tier": "disk", "budget": "clear"}"""));
        }
    }
}
