using ActorInfer.Actors.Scheduling;
using Akka.Actor;

namespace ActorInfer.Gateway.Tests;

/// <summary>The gateway's token streams over a node's event stream: who reads which request's tokens, and until when.</summary>
public sealed class TokenStreamsTests : IDisposable
{
    private readonly ActorSystem _system = ActorSystem.Create("token-streams-tests");

    [Fact]
    public async Task Every_open_stream_of_a_request_reads_its_tokens_and_a_closed_one_no_more()
    {
        var streams = new TokenStreams(_system);
        // A first attempt and a retry with the same idempotency key stream the same request; another request beside them.
        var first = streams.Open("cmpl-a#0");
        using var retry = streams.Open("cmpl-a#0");
        using var other = streams.Open("cmpl-b#0");
        _system.EventStream.Publish(new SchedulerProtocol.TokensLanded([
            new SchedulerProtocol.LandedTokens("cmpl-a#0", 0, [5]), new SchedulerProtocol.LandedTokens("cmpl-b#0", 0, [7]),
            new SchedulerProtocol.LandedTokens("cmpl-c#0", 0, [9])]));
        Assert.Equal([5], (await Next(first)).Ids);
        Assert.Equal([5], (await Next(retry)).Ids);
        Assert.Equal([7], (await Next(other)).Ids);

        // The first attempt's client went away: the retry still reads the request's tokens, the closed stream ends.
        first.Dispose();
        _system.EventStream.Publish(new SchedulerProtocol.TokensLanded([new SchedulerProtocol.LandedTokens("cmpl-a#0", 1, [6])]));
        var next = await Next(retry);
        Assert.Equal(1, next.From);
        Assert.Equal([6], next.Ids);
        Assert.False(await first.Reader.WaitToReadAsync());
    }

    private static async Task<SchedulerProtocol.LandedTokens> Next(TokenStreams.Subscription stream)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        return await stream.Reader.ReadAsync(timeout.Token);
    }

    public void Dispose() => _system.Terminate().Wait(TimeSpan.FromSeconds(10));
}
