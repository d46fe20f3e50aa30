using Akka.Actor;

namespace ActorInfer.Actors.Diagnostics;

/// <summary>An actor on the tensor thread: every message it handles is recorded on the <see cref="TensorThreadClock"/>.</summary>
internal abstract class TensorThreadActor : ReceiveActor
{
    /// <summary>How the clock names <paramref name="message"/>.</summary>
    protected abstract string Describe(object message);

    protected override bool AroundReceive(Receive receive, object message)
    {
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
