using ActorInfer.Actors.Engine;
using Akka.Actor;
using Akka.Event;
using static ActorInfer.Actors.Layers.LayerProtocol;

namespace ActorInfer.Actors.Layers;

internal sealed class LayerActor : Diagnostics.TensorThreadActor
{
    protected override string Describe(object message) =>
        message is Compute c ? (c.Step.IsPrefill ? "layer compute (prefill)" : "layer compute (decode)") : message.GetType().Name;

    public LayerActor(LayerIndex layer, IInferenceEngine engine) : base(engine.ComputeStream, engine.HostShare)
    {
        var log = Context.GetLogger();
        Receive<Compute>(m =>
        {
            var handedBack = false;
            try
            {
                // Its batch was dropped while this waited (a budget fell): nothing to compute, no one waits for it.
                if (m.Work.Disposed) return;
                var next = m.MayYield ? engine.RunLayerOrYield(layer, m.Work, m.Hidden, m.Step) : engine.RunLayer(layer, m.Work, m.Hidden, m.Step);
                if (next is null)
                {
                    // A budget change is in the scheduler's mailbox, ahead of this answer: it applies before the layer runs again.
                    Sender.Tell(new Yielded(layer, m.Batch, m.Step, m.Work, m.Hidden));
                    handedBack = true;
                    return;
                }
                Sender.Tell(new Computed(layer, m.Batch, m.Step, m.Work, next));
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                var oom = Runtime.Tiers.DeviceMemory.IsOutOfMemory(ex);
                if (oom) log.Warning("{0} ran out of device memory on {1} at {2}: {3}", layer, m.Batch, m.Step, ex.Message);
                else log.Error(ex, "{0} failed on {1} at {2}", layer, m.Batch, m.Step);
                Sender.Tell(new ComputeFailed(layer, m.Batch, m.Step, m.Work, ex.Message, oom));
            }
            finally
            {
                if (!handedBack) m.Hidden.Dispose();
            }
        });
    }
}
