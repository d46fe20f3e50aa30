using System.Text.Json;
using ActorInfer.Actors.Scheduling;
using ActorInfer.Model.Generation;
using Akka.Actor;

namespace ActorInfer.Actors.Node;

/// <summary>
/// Where the job actor enqueues on a node that serves several models: each request goes to the block scheduler of the
/// model its body names (<c>model</c>; none: the default model), with the enqueuer kept as the sender, so that results and
/// checkpoints go straight back to it. It speaks <see cref="SchedulerProtocol"/>: withdrawals and observers reach every
/// model's scheduler, and a status adds up their queues.
/// </summary>
public static class ModelRouterProtocol
{
    /// <param name="schedulers">Each served model's name and its block scheduler; the first is the default model.</param>
    public static Props Props(IReadOnlyList<KeyValuePair<string, IActorRef>> schedulers) =>
        Akka.Actor.Props.Create(() => new ModelRouterActor(schedulers));

    /// <summary>The model a persisted request names (its body's <c>model</c>), or null when it names none.</summary>
    public static string? ModelOf(string? requestJson)
    {
        if (requestJson is null) return null;
        try
        {
            using var doc = JsonDocument.Parse(requestJson);
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("model", out var m) &&
                m.ValueKind == JsonValueKind.String ? m.GetString() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }
}

internal sealed class ModelRouterActor : ReceiveActor
{
    private readonly IReadOnlyList<KeyValuePair<string, IActorRef>> _schedulers;

    public ModelRouterActor(IReadOnlyList<KeyValuePair<string, IActorRef>> schedulers)
    {
        _schedulers = schedulers;
        var byName = schedulers.ToDictionary(kv => kv.Key, kv => kv.Value);
        Receive<SchedulerProtocol.Enqueue>(m =>
        {
            var unknown = new List<SchedulerProtocol.FinishedItem>();
            foreach (var group in m.Items.GroupBy(i => ModelRouterProtocol.ModelOf(i.RequestJson) ?? schedulers[0].Key))
            {
                if (byName.TryGetValue(group.Key, out var scheduler)) scheduler.Tell(new SchedulerProtocol.Enqueue(group.ToArray()), Sender);
                else
                    // Persisted under a configuration that served it, and not served now: answered, not left waiting forever.
                    unknown.AddRange(group.Select(i => new SchedulerProtocol.FinishedItem(i.Key, CompletionJson.ErrorLine(i.Id, 0, "model",
                        $"the model '{group.Key}' is not served by this node (it serves {string.Join(", ", byName.Keys.Select(k => $"'{k}'"))})"))));
            }
            if (unknown.Count > 0) Sender.Tell(new SchedulerProtocol.Finished(0, unknown));
        });
        Receive<SchedulerProtocol.Withdraw>(m => Everyone(m));
        Receive<SchedulerProtocol.Observe>(m => Everyone(m));
        Receive<SchedulerProtocol.GetStatus>(_ =>
        {
            var replyTo = Sender;
            Task.WhenAll(_schedulers.Select(s => s.Value.Ask<SchedulerProtocol.SchedulerStatus>(SchedulerProtocol.GetStatus.Instance, TimeSpan.FromSeconds(10))))
                .PipeTo(replyTo, success: all => new SchedulerProtocol.SchedulerStatus(all.Sum(s => s.Queued), all[0].RunningBlock, all[0].NextPolicy,
                    all.Sum(s => s.DecodingSteps)));
        });
    }

    private void Everyone(object message)
    {
        foreach (var (_, scheduler) in _schedulers) scheduler.Tell(message, Sender);
    }
}
