using Microsoft.AspNetCore.Connections;

namespace ActorInfer.Gateway;

/// <summary>
/// A cap on connections that have not yet sent a request with a valid key (<c>http.connections.max-unauthenticated</c>),
/// as Kestrel connection middleware. Past the cap a new connection is not refused: the oldest unauthenticated one is
/// closed to make room. A flood of idle connections then only cycles through its own share of the node, while a
/// client that sends its key at once (its connection is the newest) gets in and, once its first request is
/// authorised, no longer counts. A refusal instead would make a new keyed connection race the flood for a free slot.
/// </summary>
public sealed class UnauthenticatedConnections
{
    private readonly Lock _gate = new();
    private readonly LinkedList<ConnectionContext> _oldestFirst = new();
    private readonly Dictionary<string, LinkedListNode<ConnectionContext>> _byId = new(StringComparer.Ordinal);
    private readonly Action _evicted;

    /// <param name="max">How many connections may wait unauthenticated at once.</param>
    /// <param name="evicted">Called for each connection closed to make room (a counter).</param>
    public UnauthenticatedConnections(int max, Action evicted)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(max, 1);
        Max = max;
        _evicted = evicted;
    }

    public int Max { get; }

    /// <summary>Connections that have not authenticated now.</summary>
    public int Count
    {
        get
        {
            lock (_gate) return _oldestFirst.Count;
        }
    }

    /// <summary>The connection middleware: counts a connection from its arrival until it authenticates or closes.</summary>
    public ConnectionDelegate Wrap(ConnectionDelegate next) => async connection =>
    {
        ConnectionContext? oldest = null;
        lock (_gate)
        {
            if (_oldestFirst.Count >= Max)
            {
                oldest = _oldestFirst.First!.Value;
                Remove(oldest.ConnectionId);
            }
            _byId[connection.ConnectionId] = _oldestFirst.AddLast(connection);
        }
        if (oldest is not null)
        {
            oldest.Abort(new ConnectionAbortedException($"more than {Max} connections without a valid key: the oldest is closed"));
            _evicted();
        }
        try
        {
            await next(connection);
        }
        finally
        {
            lock (_gate) Remove(connection.ConnectionId);
        }
    };

    /// <summary>The connection (HttpContext.Connection.Id, Kestrel's connection id) sent a request with a valid key.</summary>
    public void Authenticated(string connectionId)
    {
        lock (_gate) Remove(connectionId);
    }

    private void Remove(string connectionId)
    {
        if (_byId.Remove(connectionId, out var node)) _oldestFirst.Remove(node);
    }
}
