using System.Net.Http.Headers;
using ActorInfer.Actors.Node;
using ActorInfer.Cli.Commands;
using Microsoft.AspNetCore.Builder;

namespace ActorInfer.Gateway.Tests;

/// <summary>A node of its own (in-process, Kestrel on a free port) with one tenant from --api-key.</summary>
public sealed class StartedNode : IAsyncDisposable
{
    public const string Key = "sk-own-node";

    private StartedNode(ActorInferNode node, WebApplication app)
    {
        Node = node;
        App = app;
    }

    public ActorInferNode Node { get; }
    public WebApplication App { get; }

    public static async Task<StartedNode> Start(string config, string dataDir)
    {
        var previous = Directory.GetCurrentDirectory();
        ActorInferNode node;
        Directory.SetCurrentDirectory(GatewayFixture.RepositoryRoot);
        try
        {
            var (settings, file) = NodeCommand.LoadSettings(config, new NodeCommand.NodeFlags(DataDir: dataDir, Port: 0, ApiKey: Key),
                new Dictionary<string, string?>());
            node = ActorInferNode.Start(settings, file);
        }
        finally
        {
            Directory.SetCurrentDirectory(previous);
        }
        var app = GatewayApp.Build(node);
        await app.StartAsync();
        return new StartedNode(node, app);
    }

    public HttpClient Client(string key = Key)
    {
        var client = new HttpClient { BaseAddress = new Uri(GatewayApp.BaseAddress(App)) };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }

    public async ValueTask DisposeAsync()
    {
        await App.StopAsync();
        await App.DisposeAsync();
        await Node.DisposeAsync();
    }
}
