namespace ActorInfer.Runtime.Schedule;

/// <summary>
/// Budget changes on their way to the scheduler, as the tensor thread's work in progress sees them. The sender raises it
/// after handing the change to the scheduler's mailbox (<see cref="Sent"/>), the scheduler lowers it as it takes the
/// change (<see cref="Received"/>). While it is raised, a decoder layer of a one-batch step (decoding, or a prefill into
/// a device cache) stops at its next yield point, nothing of it kept (<see cref="BlockSession.Run"/>), so that the change
/// applies without waiting for the layer; the layer is then run again from its start. Thread-safe.
/// </summary>
public sealed class ChangeSignal
{
    private int _inFlight;
    private long _yields;

    /// <summary>A change was handed to the scheduler's mailbox.</summary>
    public void Sent() => Interlocked.Increment(ref _inFlight);

    /// <summary>The scheduler took a change that was signalled (before or after its sender's <see cref="Sent"/>).</summary>
    public void Received() => Interlocked.Decrement(ref _inFlight);

    /// <summary>Whether a change is in the scheduler's mailbox, not yet taken.</summary>
    public bool Waiting => Volatile.Read(ref _inFlight) > 0;

    /// <summary>Layers, and steps' ends between two batches' output heads, that stopped for a change, over the signal's life.</summary>
    public long Yields => Interlocked.Read(ref _yields);

    /// <summary>Work in progress stopped for a change on its way.</summary>
    public void Yielded() => Interlocked.Increment(ref _yields);
}
