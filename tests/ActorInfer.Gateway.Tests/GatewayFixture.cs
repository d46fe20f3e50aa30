using ActorInfer.TestSupport;
using System.CommandLine;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Node;
using ActorInfer.Cli;
using ActorInfer.Cli.Commands;
using Microsoft.AspNetCore.Builder;

namespace ActorInfer.Gateway.Tests;

/// <summary>
/// One real node for the whole suite: `actorinfer node`'s settings path (file + flags), the bundled opt-tiny
/// model, SQLite under a temp data folder, Kestrel on 127.0.0.1 and a free port. Three tenants (carol may queue
/// only 2 requests) and an admin key.
/// </summary>
public sealed class GatewayFixture : IAsyncLifetime
{
    public const string AliceKey = "sk-alice-0123456789";
    public const string BobKey = "sk-bob-0123456789";
    public const string CarolKey = "sk-carol-0123456789";
    public const string AdminKey = "sk-admin-0123456789";

    public string Dir { get; } = TempDir();
    public ActorInferNode Node { get; private set; } = null!;
    public WebApplication App { get; private set; } = null!;
    public string BaseAddress { get; private set; } = "";
    public string ModelDir => Path.Combine(RepositoryRoot, "models", "opt-tiny");

    public async Task InitializeAsync()
    {
        var config = Path.Combine(Dir, "node.conf");
        File.WriteAllText(config, $$"""
            actorinfer {
              model = "models/opt-tiny"
              scheduler { max-gpu-batch-size = 8, max-gpu-batches = 2 }
              persistence.snapshot-every = 50
              memory.telemetry-interval = 1h
              http {
                enabled = on
                admin-key-hashes = ["{{HttpSettings.HashKey(AdminKey)}}"]
                max-body-bytes = 65536
                tenants {
                  alice { api-key-hashes = ["{{HttpSettings.HashKey(AliceKey)}}"], priority = 1, max-priority = 3 }
                  bob { api-key-hashes = ["{{HttpSettings.HashKey(BobKey)}}"] }
                  carol { api-key-hashes = ["{{HttpSettings.HashKey(CarolKey)}}"], max-queued-requests = 2 }
                }
              }
            }
            """);
        var previous = Directory.GetCurrentDirectory();
        Directory.SetCurrentDirectory(RepositoryRoot);
        try
        {
            var (settings, file) = NodeCommand.LoadSettings(config, new NodeCommand.NodeFlags(DataDir: Path.Combine(Dir, "data"), Host: "127.0.0.1", Port: 0),
                new Dictionary<string, string?>());
            Node = ActorInferNode.Start(settings, file);
        }
        finally
        {
            Directory.SetCurrentDirectory(previous);
        }
        App = GatewayApp.Build(Node);
        await App.StartAsync();
        BaseAddress = GatewayApp.BaseAddress(App);
    }

    public async Task DisposeAsync()
    {
        await App.StopAsync();
        await App.DisposeAsync();
        await Node.DisposeAsync();
    }

    private readonly SemaphoreSlim _bobJobLock = new(1, 1);
    private string? _bobJob;

    /// <summary>A job that bob owns (created once): the id other tenants must not see.</summary>
    public async Task<string> BobJob()
    {
        await _bobJobLock.WaitAsync();
        try
        {
            if (_bobJob is not null) return _bobJob;
            using var bob = Client(BobKey);
            using var response = await bob.PostAsync("/v1/jobs", new StringContent("{\"prompt\": \"bob's\", \"max_tokens\": 2}"));
            return _bobJob = (await ReadJson(response)).GetProperty("id").GetString()!;
        }
        finally
        {
            _bobJobLock.Release();
        }
    }

    public HttpClient Client(string? key)
    {
        var client = new HttpClient { BaseAddress = new Uri(BaseAddress), Timeout = TimeSpan.FromSeconds(120) };
        if (key is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }

    public static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    public static async Task<JsonElement> ReadJson(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        try
        {
            return JsonDocument.Parse(text).RootElement.Clone();
        }
        catch (JsonException)
        {
            throw new Xunit.Sdk.XunitException($"not JSON ({(int)response.StatusCode}): {text}");
        }
    }

    /// <summary>Polls until the condition holds (every 50 ms unless told); fails with the last value after the timeout.</summary>
    public static async Task<T> Poll<T>(Func<Task<T>> read, Func<T, bool> done, TimeSpan timeout, TimeSpan? every = null)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var value = await read();
            if (done(value)) return value;
            if (DateTime.UtcNow > deadline) throw new Xunit.Sdk.XunitException($"condition not reached within {timeout}; last: {value}");
            await Task.Delay(every ?? TimeSpan.FromMilliseconds(50));
        }
    }

    /// <summary>`actorinfer generate --keep-going` in-process on the same model: the reference output lines.</summary>
    public string[] Generate(IEnumerable<string> requestLines) => Generate(ModelDir, requestLines);

    /// <summary>`actorinfer generate --keep-going` in-process on <paramref name="modelDir"/>.</summary>
    public static string[] Generate(string modelDir, IEnumerable<string> requestLines)
    {
        var dir = TempDir();
        var input = Path.Combine(dir, "in.jsonl");
        var output = Path.Combine(dir, "out.jsonl");
        File.WriteAllLines(input, requestLines);
        lock (ConsoleLock)
        {
            var root = new RootCommand("test");
            foreach (var c in CommandCatalog.All()) root.Subcommands.Add(c);
            var code = CliRunner.Run(root, ["generate", "--model", modelDir, "--input", input, "--output", output, "--keep-going"], TextWriter.Null);
            Assert.True(code is 0 or 1, $"generate exited {code}");
        }
        return File.ReadAllLines(output);
    }

    private static readonly Lock ConsoleLock = new();

    public static string RepositoryRoot => TestPaths.RepositoryRoot;

    public static string TempDir() => TestPaths.TempDir();
}

[CollectionDefinition(Name)]
public sealed class GatewayCollection : ICollectionFixture<GatewayFixture>
{
    public const string Name = "gateway";
}
