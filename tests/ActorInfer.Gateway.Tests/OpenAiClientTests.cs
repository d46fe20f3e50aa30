using System.Diagnostics;
using System.Text.Json;

namespace ActorInfer.Gateway.Tests;

/// <summary>A fact that is skipped, saying why, when node or npm is not on the PATH.</summary>
public sealed class NodeJsFactAttribute : FactAttribute
{
    public NodeJsFactAttribute()
    {
        if (OpenAiClientTests.FindOnPath("node") is null || OpenAiClientTests.FindOnPath("npm") is null)
            Skip = "node and npm are not on the PATH: the openai npm client check cannot run";
    }
}

/// <summary>The official `openai` npm client (pinned in npm/package.json) against the real node.</summary>
[Collection(GatewayCollection.Name)]
public sealed class OpenAiClientTests(GatewayFixture node)
{
    [NodeJsFact]
    public void The_openai_npm_client_completes_and_streams()
    {
        var dir = Path.Combine(GatewayFixture.RepositoryRoot, "tests", "ActorInfer.Gateway.Tests", "npm");
        var install = Run(FindOnPath("npm")!, dir, TimeSpan.FromMinutes(3), "ci", "--no-audit", "--no-fund");
        Assert.True(install.Code == 0, "npm ci failed:\n" + install.Output);
        var run = Run(FindOnPath("node")!, dir, TimeSpan.FromMinutes(1), "script.mjs", node.BaseAddress, GatewayFixture.AliceKey);
        Assert.True(run.Code == 0, "script.mjs failed:\n" + run.Output);
        var checks = run.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith('{'))
            .Select(l => JsonDocument.Parse(l).RootElement).ToDictionary(e => e.GetProperty("check").GetString()!);

        var expected = JsonDocument.Parse(node.Generate(["""{"prompt": "Hello, my dog is", "max_tokens": 12, "temperature": 0}"""])[0]).RootElement;
        Assert.Equal("opt-tiny", checks["models"].GetProperty("model").GetString());
        Assert.Equal(expected.GetProperty("text").GetString(), checks["completion"].GetProperty("text").GetString());
        Assert.Equal(expected.GetProperty("output_ids").GetArrayLength(), checks["completion"].GetProperty("completion_tokens").GetInt32());
        Assert.Equal(expected.GetProperty("text").GetString(), checks["stream"].GetProperty("text").GetString());
        Assert.Equal(expected.GetProperty("finish_reason").GetString(), checks["stream"].GetProperty("finish_reason").GetString());
        Assert.True(checks["stream"].GetProperty("chunks").GetInt32() > 1);
        Assert.Equal(400, checks["error"].GetProperty("status").GetInt32());
        Assert.Equal("max_tokens", checks["error"].GetProperty("param").GetString());
    }

    public static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    internal static (int Code, string Output) Run(string program, string dir, TimeSpan timeout, params string[] args)
    {
        var start = new ProcessStartInfo(program) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            return (-1, $"timed out after {timeout}\n{stdout.Result}\n{stderr.Result}");
        }
        return (process.ExitCode, stdout.Result + "\n" + stderr.Result);
    }
}
