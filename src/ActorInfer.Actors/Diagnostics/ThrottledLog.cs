namespace ActorInfer.Actors.Diagnostics;

/// <summary>
/// A failure that repeats is logged with backoff: the first at once, the next after <c>first</c>, then at doubling
/// intervals up to <c>longest</c>, each with the number of occurrences not logged since. A failure that comes every
/// poll would otherwise write thousands of lines a minute and bury everything else. <see cref="Recovered"/> starts over.
/// </summary>
public sealed class ThrottledLog(Action<string> write, TimeSpan first, TimeSpan longest, Func<DateTime>? clock = null)
{
    private readonly Func<DateTime> _clock = clock ?? (() => DateTime.UtcNow);
    private DateTime _next = DateTime.MinValue;
    private readonly TimeSpan _first = first;
    private TimeSpan _interval = first;
    private int _unlogged;

    /// <summary>Occurrences not logged since the last line.</summary>
    public int Unlogged => _unlogged;

    public void Failed(string message)
    {
        var now = _clock();
        if (now < _next)
        {
            _unlogged++;
            return;
        }
        write(_unlogged > 0 ? $"{message} (and {_unlogged} more times since the last report)" : message);
        _unlogged = 0;
        _next = now + _interval;
        _interval = _interval * 2 < longest ? _interval * 2 : longest;
    }

    public void Recovered()
    {
        _next = DateTime.MinValue;
        _interval = _first;
        _unlogged = 0;
    }
}
