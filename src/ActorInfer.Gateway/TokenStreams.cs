using System.Collections.Concurrent;
using System.Threading.Channels;
using ActorInfer.Actors.Scheduling;
using Akka.Actor;

namespace ActorInfer.Gateway;

/// <summary>
/// The tokens of streaming completions as this node's schedulers choose them: each scheduler publishes a step's tokens
/// (<see cref="SchedulerProtocol.TokensLanded"/>) on the actor system's event stream, and a completion that streams reads
/// those of its request here, before its block finishes. On a cluster gateway the workers' endpoints send their
/// schedulers' tokens to the gateway's dispatcher, which publishes them here likewise.
/// </summary>
public sealed class TokenStreams
{
    private readonly ConcurrentDictionary<string, Channel<SchedulerProtocol.LandedTokens>> _open = new();

    public TokenStreams(ActorSystem system)
    {
        var listener = system.ActorOf(Props.Create(() => new Listener(this)));
        system.EventStream.Subscribe(listener, typeof(SchedulerProtocol.TokensLanded));
    }

    /// <summary>
    /// Starts keeping the tokens of the scheduler's request <paramref name="key"/> (opened before the request is admitted,
    /// so that none are missed); disposing the subscription stops it.
    /// </summary>
    public Subscription Open(string key)
    {
        var channel = Channel.CreateUnbounded<SchedulerProtocol.LandedTokens>(new UnboundedChannelOptions { SingleReader = true });
        _open[key] = channel;
        return new Subscription(this, key, channel);
    }

    private void Deliver(SchedulerProtocol.TokensLanded landed)
    {
        foreach (var tokens in landed.Sequences)
            if (_open.TryGetValue(tokens.Key, out var channel))
                channel.Writer.TryWrite(tokens);
    }

    public sealed class Subscription(TokenStreams streams, string key, Channel<SchedulerProtocol.LandedTokens> channel) : IDisposable
    {
        public ChannelReader<SchedulerProtocol.LandedTokens> Reader => channel.Reader;

        public void Dispose()
        {
            streams._open.TryRemove(new KeyValuePair<string, Channel<SchedulerProtocol.LandedTokens>>(key, channel));
            channel.Writer.TryComplete();
        }
    }

    private sealed class Listener : ReceiveActor
    {
        public Listener(TokenStreams streams) => Receive<SchedulerProtocol.TokensLanded>(streams.Deliver);
    }
}
