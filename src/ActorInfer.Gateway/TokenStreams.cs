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
    // The open streams by the scheduler's key: a completion retried with its idempotency key while the first attempt still
    // streams reads the same tokens beside it.
    private readonly Dictionary<string, List<Channel<SchedulerProtocol.LandedTokens>>> _open = new(StringComparer.Ordinal);

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
        lock (_open)
        {
            if (!_open.TryGetValue(key, out var channels)) _open[key] = channels = [];
            channels.Add(channel);
        }
        return new Subscription(this, key, channel);
    }

    private void Close(string key, Channel<SchedulerProtocol.LandedTokens> channel)
    {
        lock (_open)
            if (_open.TryGetValue(key, out var channels) && channels.Remove(channel) && channels.Count == 0)
                _open.Remove(key);
        channel.Writer.TryComplete();
    }

    private void Deliver(SchedulerProtocol.TokensLanded landed)
    {
        lock (_open)
            foreach (var tokens in landed.Sequences)
                if (_open.TryGetValue(tokens.Key, out var channels))
                    foreach (var channel in channels)
                        channel.Writer.TryWrite(tokens);
    }

    public sealed class Subscription(TokenStreams streams, string key, Channel<SchedulerProtocol.LandedTokens> channel) : IDisposable
    {
        public ChannelReader<SchedulerProtocol.LandedTokens> Reader => channel.Reader;

        public void Dispose() => streams.Close(key, channel);
    }

    private sealed class Listener : ReceiveActor
    {
        public Listener(TokenStreams streams) => Receive<SchedulerProtocol.TokensLanded>(streams.Deliver);
    }
}
