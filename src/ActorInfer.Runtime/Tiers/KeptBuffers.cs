namespace ActorInfer.Runtime.Tiers;

/// <summary>
/// The buffers a <see cref="HostBufferPool"/> keeps ready, by shape (<see cref="HostBufferPool.KeyOf"/>), and their
/// bytes. Not thread-safe and takes no lock: only the pool uses it, under its gate.
/// </summary>
internal sealed class KeptBuffers
{
    private readonly Dictionary<string, Stack<HostBuffer>> _kept = [];

    /// <summary>Bytes of the buffers kept.</summary>
    public long Bytes { get; private set; }

    /// <summary>
    /// The last kept buffer of this shape, <paramref name="bytes"/> counted off (its stack stays, even empty, for
    /// <see cref="Untake"/> to put it back on); null when none is kept.
    /// </summary>
    public HostBuffer? Take(string key, long bytes)
    {
        if (!_kept.TryGetValue(key, out var stack) || stack.Count == 0) return null;
        var kept = stack.Pop();
        Bytes -= bytes;
        return kept;
    }

    /// <summary>Puts back what <see cref="Take"/> just gave, counting its <paramref name="bytes"/> again.</summary>
    public void Untake(string key, HostBuffer kept, long bytes)
    {
        _kept[key].Push(kept);
        Bytes += bytes;
    }

    public HostBuffer Pop(string key)
    {
        var stack = _kept[key];
        var buffer = stack.Pop();
        if (stack.Count == 0) _kept.Remove(key);
        Bytes -= buffer.Bytes;
        return buffer;
    }

    public void Push(string key, HostBuffer buffer)
    {
        if (!_kept.TryGetValue(key, out var stack)) _kept[key] = stack = new Stack<HostBuffer>();
        stack.Push(buffer);
        Bytes += buffer.Bytes;
    }

    public int Count(string key) => _kept.TryGetValue(key, out var stack) ? stack.Count : 0;

    public string LargestKey() => _kept.Where(e => e.Value.Count > 0).MaxBy(e => e.Value.Peek().Bytes).Key;

    /// <summary>The shape of the largest kept buffer beyond what the current needs want of it (all of a shape they do not name).</summary>
    public string? SpareKey(Dictionary<string, WantedBuffer>? wanted)
    {
        string? best = null;
        long bestBytes = 0;
        foreach (var (key, stack) in _kept)
        {
            if (stack.Count == 0) continue;
            var want = wanted is not null && wanted.TryGetValue(key, out var w) ? w.Count : 0;
            if (stack.Count <= want || stack.Peek().Bytes <= bestBytes) continue;
            best = key;
            bestBytes = stack.Peek().Bytes;
        }
        return best;
    }
}
