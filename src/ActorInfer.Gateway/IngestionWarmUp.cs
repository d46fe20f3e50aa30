using System.Text;
using ActorInfer.Actors.Jobs;
using ActorInfer.Model.Generation;
using Akka.Actor;

namespace ActorInfer.Gateway;

/// <summary>
/// The path a job's body takes before it is accepted, run once on a synthetic job when the gateway is built: each line's
/// strict JSON parse and request check (<see cref="JobProtocol.Entry"/>) and the journal's serialization of the accepted
/// event (without persisting it). Their first use compiles the JSON readers and the journal's serializer, and a node's
/// first job waited for that: on a 2-core machine a fresh node accepted a 1,000-line job of 512-token prompts in a median
/// 0.70 s without this and 0.55 s with it, a warm one in 0.13 to 0.16 s (docs/perf/cpu-ingestion-warm-up/). Nothing
/// reaches the journal, the scheduler or a tenant.
/// </summary>
public static class IngestionWarmUp
{
    /// <summary>Lines in the synthetic job.</summary>
    public const int Lines = 32;

    /// <summary>Parses and serializes the synthetic job; returns how many of its lines parsed as valid requests.</summary>
    public static int Run(ActorSystem system, CompletionFactory factory)
    {
        var config = factory.Config;
        // A prompt as long as a job's typically is, within the model's context, of ids within its vocabulary.
        var length = Math.Max(1, Math.Min(512, config.MaxPositionEmbeddings - 1));
        var entries = new List<JobProtocol.JobEntry>(Lines);
        var line = new StringBuilder();
        for (var i = 0; i < Lines; i++)
        {
            line.Clear().Append("{\"id\":\"warm-up-").Append(i).Append("\",\"prompt\":[").Append(config.BosTokenId);
            for (var j = 1; j < length; j++) line.Append(',').Append(3 + (i * 7919 + j * 104729) % Math.Max(1, config.VocabSize - 3));
            line.Append("],\"max_tokens\":1,\"temperature\":0}");
            if (JobProtocol.Entry(line.ToString(), i + 1, factory, 0, out _) is { } entry) entries.Add(entry);
        }
        var accepted = new JobEvents.Accepted("warm-up", entries.Select(e => e.Id).ToArray(), entries.Select(e => e.RequestJson).ToArray(),
            entries.Select(e => e.Seed).ToArray(), entries.Select(e => e.ErrorLine).ToArray(), "warm-up", 0, 0);
        system.Serialization.FindSerializerFor(accepted).ToBinary(accepted);
        return entries.Count(e => e.RequestJson is not null);
    }
}
