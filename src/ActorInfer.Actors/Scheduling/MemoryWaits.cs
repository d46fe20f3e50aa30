using Akka.Actor;
using Akka.Event;
using ActorInfer.Model.Generation;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;

namespace ActorInfer.Actors.Scheduling;

/// <summary>
/// Queued requests waiting for memory: while no policy fits (the budgets leave no room for one sequence), each waiting
/// request's wait counts, and one that has waited <paramref name="limit"/> fails with the reason. A policy that fits (or
/// nothing waiting) ends every wait. Without a limit, requests wait as long as it takes.
/// </summary>
/// <param name="scheduleChecks">
/// Starts the scheduler's periodic look at the waits (every given time; a <see cref="CheckMemoryWait"/> to itself), cancelable.
/// </param>
internal sealed class MemoryWaits(WaitingWork waiting, TimeSpan? limit, Func<TimeSpan, ICancelable> scheduleChecks, ILoggingAdapter log)
{
    /// <summary>The scheduler's periodic look at the waits (<see cref="Expire"/>).</summary>
    public sealed record CheckMemoryWait
    {
        public static readonly CheckMemoryWait Instance = new();
    }

    private ICancelable? _checks;

    public TimeSpan? Limit => limit;

    /// <summary>Starts the waits (and the periodic checks) while no policy fits and requests wait; ends them otherwise.</summary>
    public void Watch(bool policyFits)
    {
        if (limit is not { } l) return;
        if (policyFits || waiting.Count == 0)
        {
            waiting.EndMemoryWaits();
            Stop();
            return;
        }
        waiting.StartMemoryWaits();
        _checks ??= scheduleChecks(l / 4);
    }

    /// <summary>
    /// Fails the requests that have waited the limit: each enqueuer is told its failure lines, the count is logged, and
    /// the waits are watched again (<see cref="Watch"/>: with no request left they end).
    /// </summary>
    public void Expire(bool policyFits)
    {
        if (limit is not { } l || policyFits) return;
        var expired = waiting.TakeWaitedForMemory(l);
        var reason = $"no memory: the budgets leave no room for one sequence of this model, and the request waited {l.TotalSeconds:0.#} s for that to change";
        List<(IActorRef ReplyTo, Finished Finished)> failed = expired.GroupBy(e => e.ReplyTo)
            .Select(g => (g.Key, new Finished(0, g.Select(e => new FinishedItem(e.Item.Key, CompletionJson.ErrorLine(e.Item.Id, 0, "", reason))).ToArray())))
            .ToList();
        if (failed.Count == 0) return;
        foreach (var (replyTo, finished) in failed) replyTo.Tell(finished);
        log.Warning("{0} requests failed after waiting {1} for memory", failed.Sum(f => f.Finished.Results.Count), Limit);
        Watch(policyFits);
    }

    public void Stop()
    {
        _checks?.Cancel();
        _checks = null;
    }
}
