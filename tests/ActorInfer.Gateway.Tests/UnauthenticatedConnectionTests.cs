using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.DependencyInjection;

namespace ActorInfer.Gateway.Tests;

/// <summary>
/// <c>http.connections.max-unauthenticated</c>: connections that sent nothing are capped apart from the rest; past the
/// cap the oldest is closed, so a new client with a key gets in beside a flood, and once authorised it no longer
/// counts (more idle connections close each other, never it).
/// </summary>
public sealed class UnauthenticatedConnectionTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Past_the_cap_the_oldest_idle_connection_closes_and_a_keyed_one_gets_in_and_stays()
    {
        var dir = GatewayFixture.TempDir();
        var config = Path.Combine(dir, "node.conf");
        File.WriteAllText(config, """
            actorinfer {
              model = "models/opt-tiny"
              # Kestrel's own timeouts far beyond the test: only the cap closes a connection here.
              http.connections { max = 64, max-unauthenticated = 4, keep-alive-timeout = 10m, request-headers-timeout = 10m }
            }
            """);
        await using var node = await StartedNode.Start(config, Path.Combine(dir, "data"));
        var gate = node.App.Services.GetRequiredService<GatewayContext>().Unauthenticated!;
        Assert.Equal(4, gate.Max);
        var endpoint = new Uri(GatewayApp.BaseAddress(node.App));
        var address = new IPEndPoint(IPAddress.Loopback, endpoint.Port);

        // Four idle connections, each counted before the next opens (so their order is known): the cap is full.
        var idle = new List<Socket>();
        for (var i = 0; i < 4; i++)
        {
            idle.Add(await Connect(address));
            await Until(() => gate.Count == i + 1, $"{i + 1} unauthenticated connections");
        }

        // A client with a key on a fresh connection is served; the oldest idle connection was closed for it.
        using var keyed = await Connect(address);
        Assert.StartsWith("HTTP/1.1 200", await Exchange(keyed, "/v1/models", StartedNode.Key));
        Assert.True(await ClosedByNode(idle[0]), "the oldest idle connection is still open");
        await Until(() => gate.Count == 3, "the keyed connection no longer counting");

        // Four more idle connections evict the three older ones and each other, never the authorised connection.
        for (var i = 0; i < 4; i++) idle.Add(await Connect(address));
        foreach (var old in idle.Skip(1).Take(3)) Assert.True(await ClosedByNode(old), "an older idle connection is still open");
        await Until(() => gate.Count == 4, "4 unauthenticated connections");
        var metrics = await Exchange(keyed, "/metrics", StartedNode.Key);
        Assert.StartsWith("HTTP/1.1 200", metrics);
        Assert.Contains("\nactorinfer_connections_evicted_total 4\n", metrics);

        // An unknown key does not authenticate a connection: it still counts, and is closed in its turn.
        using var wrongKey = await Connect(address);
        Assert.StartsWith("HTTP/1.1 401", await Exchange(wrongKey, "/v1/models", "sk-not-a-key"));
        for (var i = 0; i < 4; i++) idle.Add(await Connect(address));
        Assert.True(await ClosedByNode(wrongKey), "a connection with an invalid key is still open");
        foreach (var socket in idle) socket.Dispose();
    }

    private static async Task<Socket> Connect(IPEndPoint address)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(address);
        return socket;
    }

    private static async Task Until(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new Xunit.Sdk.XunitException($"not reached within {Patience}: {what}");
            await Task.Delay(20);
        }
    }

    /// <summary>Whether the node closes the connection (end of stream or reset) within the patience; it never sends on its own.</summary>
    private static async Task<bool> ClosedByNode(Socket socket)
    {
        using var cancel = new CancellationTokenSource(Patience);
        try
        {
            return await socket.ReceiveAsync(new byte[1], SocketFlags.None, cancel.Token) == 0;
        }
        catch (SocketException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>One HTTP/1.1 GET on the socket (kept alive), read to the end of its response: the response's text.</summary>
    private static async Task<string> Exchange(Socket socket, string path, string key)
    {
        await socket.SendAsync(Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: node\r\nAuthorization: Bearer {key}\r\n\r\n"));
        var text = new StringBuilder();
        var buffer = new byte[65536];
        using var cancel = new CancellationTokenSource(Patience);
        while (!Complete(text.ToString()))
        {
            var n = await socket.ReceiveAsync(buffer, SocketFlags.None, cancel.Token);
            if (n == 0) throw new Xunit.Sdk.XunitException($"the node closed the connection mid-response: {text}");
            text.Append(Encoding.UTF8.GetString(buffer, 0, n));
        }
        return text.ToString();
    }

    private static bool Complete(string response)
    {
        var end = response.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        if (end < 0) return false;
        var headers = response[..end].ToLowerInvariant();
        if (headers.Contains("transfer-encoding: chunked")) return response.EndsWith("\r\n0\r\n\r\n", StringComparison.Ordinal);
        var length = headers.Split("\r\n").FirstOrDefault(h => h.StartsWith("content-length:", StringComparison.Ordinal));
        return length is null || Encoding.UTF8.GetByteCount(response[(end + 4)..]) >= int.Parse(length["content-length:".Length..].Trim());
    }
}
