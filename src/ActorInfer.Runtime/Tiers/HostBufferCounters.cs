using System.Diagnostics;

namespace ActorInfer.Runtime.Tiers;

/// <summary>
/// Where a <see cref="HostBufferPool"/>'s buffers came from and went, in bytes and stopwatch ticks, and the worker's
/// failures: what <see cref="HostBufferCounts"/> reports. Not thread-safe and takes no lock: only the pool uses it,
/// under its gate.
/// </summary>
internal sealed class HostBufferCounters
{
    private long _preparedBytes, _preparingTicks, _servedPrepared, _reused, _inlineBytes, _inlineTouchTicks, _inlineRegisterTicks;
    private long _releasedBytes, _releasingTicks;
    private int _failures;
    private string? _lastFailure;

    public HostBufferCounts Counts =>
        new(_preparedBytes, Stopwatch.GetElapsedTime(0, _preparingTicks), _servedPrepared, _reused,
            _inlineBytes, Stopwatch.GetElapsedTime(0, _inlineTouchTicks), Stopwatch.GetElapsedTime(0, _inlineRegisterTicks),
            _releasedBytes, Stopwatch.GetElapsedTime(0, _releasingTicks), _failures, _lastFailure);

    /// <summary>A kept buffer served a lease: one the worker prepared, or one a lease gave back.</summary>
    public void Served(bool prepared, long bytes)
    {
        if (prepared) _servedPrepared += bytes;
        else _reused += bytes;
    }

    /// <summary>A lease's thread made its buffer itself, taking these stopwatch ticks.</summary>
    public void MadeInline(long bytes, long touchTicks, long registerTicks)
    {
        _inlineBytes += bytes;
        _inlineTouchTicks += touchTicks;
        _inlineRegisterTicks += registerTicks;
    }

    /// <summary>The worker made a buffer ahead, taking these stopwatch ticks.</summary>
    public void Prepared(long bytes, long ticks)
    {
        _preparedBytes += bytes;
        _preparingTicks += ticks;
    }

    /// <summary>The worker freed a buffer, taking these stopwatch ticks.</summary>
    public void Released(long bytes, long ticks)
    {
        _releasedBytes += bytes;
        _releasingTicks += ticks;
    }

    /// <summary>The worker could not make or free a buffer.</summary>
    public void Failed(string? message)
    {
        _failures++;
        _lastFailure = message;
    }
}
