using Akka.Actor;

namespace ActorInfer.Actors.Diagnostics;

/// <summary>
/// An actor on a tensor thread: every message it handles is recorded on the <see cref="TensorThreadClock"/>. Where its
/// engine has a CUDA stream of its own (<paramref name="stream"/>), the thread enters it before the actor's first work,
/// and the thread takes its model's share of the host (<paramref name="host"/>, a model below the node's top priority).
/// </summary>
internal abstract class TensorThreadActor(Runtime.Cuda.ComputeStream? stream, Scheduling.HostShare? host = null) : ReceiveActor
{
    /// <summary>How the clock names <paramref name="message"/>.</summary>
    protected abstract string Describe(object message);

    protected override bool AroundReceive(Receive receive, object message)
    {
        // Before the actor's first work on the thread (later calls return at once; a dispatcher's thread may be replaced).
        stream?.Enter();
        host?.Enter();
        var start = System.Diagnostics.Stopwatch.GetTimestamp();
        var what = Describe(message);
        TensorThreadClock.Begin(what, start);
        try
        {
            return base.AroundReceive(receive, message);
        }
        finally
        {
            TensorThreadClock.Record(what, start);
        }
    }
}
