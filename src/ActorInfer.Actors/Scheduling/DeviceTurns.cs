using Akka.Actor;

namespace ActorInfer.Actors.Scheduling;

/// <summary>
/// One queue without priorities, the baseline that `arbiter.one-queue = on` makes of a node of several models: the
/// device runs one model's block at a time, and the models with waiting work take it in turns, in the order they asked
/// (round robin: a model that finishes a block and has more work asks again behind those already waiting). Shared by
/// the node's block schedulers, each on its own tensor thread; a scheduler told <see cref="SchedulerProtocol.TurnFree"/>
/// tries to start its block again.
/// </summary>
public sealed class DeviceTurns
{
    private readonly object _gate = new();
    private readonly List<IActorRef> _asking = [];
    private IActorRef? _holder;

    /// <summary>The scheduler running a block now, if any.</summary>
    public IActorRef? Holder
    {
        get { lock (_gate) return _holder; }
    }

    /// <summary>
    /// Whether <paramref name="scheduler"/> may start a block now: no block runs and no scheduler asked before it. If not,
    /// it is told <see cref="SchedulerProtocol.TurnFree"/> when its turn comes.
    /// </summary>
    public bool TryTake(IActorRef scheduler)
    {
        lock (_gate)
        {
            if (_holder is not null) return _holder.Equals(scheduler) || Ask(scheduler);
            if (_asking.Count > 0 && !_asking[0].Equals(scheduler)) return Ask(scheduler);
            _asking.Remove(scheduler);
            _holder = scheduler;
            return true;
        }
    }

    /// <summary><paramref name="scheduler"/>'s block ended (or never opened): the next one that asked takes the device.</summary>
    public void Release(IActorRef scheduler)
    {
        IActorRef? next;
        lock (_gate)
        {
            if (!scheduler.Equals(_holder)) return;
            _holder = null;
            next = _asking.FirstOrDefault();
        }
        next?.Tell(SchedulerProtocol.TurnFree.Instance);
    }

    /// <summary>
    /// <paramref name="scheduler"/> has nothing to start now (no work, or no policy that fits): it stops asking, and gives
    /// the device back if it held it; the next one that asked is told when the device is free.
    /// </summary>
    public void Leave(IActorRef scheduler)
    {
        IActorRef? next = null;
        lock (_gate)
        {
            // Only the holder or the first in line leaving changes who is next.
            var passes = scheduler.Equals(_holder) || (_asking.Count > 0 && _asking[0].Equals(scheduler));
            _asking.Remove(scheduler);
            if (scheduler.Equals(_holder)) _holder = null;
            if (passes && _holder is null) next = _asking.FirstOrDefault();
        }
        next?.Tell(SchedulerProtocol.TurnFree.Instance);
    }

    private bool Ask(IActorRef scheduler)
    {
        if (!_asking.Contains(scheduler)) _asking.Add(scheduler);
        return false;
    }
}
