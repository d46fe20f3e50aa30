using ActorInfer.Actors.Scheduling;
using Akka.Actor;

namespace ActorInfer.Actors.Node;

/// <summary>Work handed straight to a block scheduler, outside the job actors: not persisted, answered to the caller.</summary>
internal static class ScheduledWork
{
    /// <summary>
    /// Runs the requests through <paramref name="scheduler"/> and returns one result line per request, in order;
    /// <paramref name="finished"/> hears each block's results as they come.
    /// </summary>
    public static IReadOnlyList<string> Run(ActorSystem system, IActorRef scheduler, IReadOnlyList<SchedulerProtocol.WorkItem> items, TimeSpan timeout,
        Action<IReadOnlyList<SchedulerProtocol.FinishedItem>>? finished = null)
    {
        // A collector actor completes a task when every result is in: the caller's thread sleeps on the task
        // instead of polling a mailbox beside the tensor thread.
        var done = new TaskCompletionSource<Dictionary<string, string>>(TaskCreationOptions.RunContinuationsAsynchronously);
        var collector = system.ActorOf(Props.Create(() => new Collector(items.Count, done, finished)));
        scheduler.Tell(new SchedulerProtocol.Enqueue(items), collector);
        try
        {
            if (!done.Task.Wait(timeout))
                throw new TimeoutException($"requests unfinished after {timeout}");
        }
        finally
        {
            system.Stop(collector);
        }
        var results = done.Task.Result;
        return items.Select(i => results[i.Key]).ToArray();
    }

    private sealed class Collector : ReceiveActor
    {
        public Collector(int expected, TaskCompletionSource<Dictionary<string, string>> done, Action<IReadOnlyList<SchedulerProtocol.FinishedItem>>? finished)
        {
            var results = new Dictionary<string, string>();
            Receive<SchedulerProtocol.Finished>(m =>
            {
                foreach (var r in m.Results) results[r.Key] = r.ResultLine;
                finished?.Invoke(m.Results);
                if (results.Count >= expected) done.TrySetResult(results);
            });
            // Nothing here resumes after a crash: the scheduler's queue holds the requeued work.
            Receive<SchedulerProtocol.Checkpointed>(_ => { });
        }
    }
}
