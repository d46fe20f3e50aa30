using System.Diagnostics;
using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Scheduling;
using ActorInfer.Model.Config;
using ActorInfer.Model.Generation;
using Akka.Actor;
using Akka.Event;

namespace ActorInfer.Actors.Node;

/// <summary>
/// The synthetic job a model runs before its node serves (`actorinfer.warm-up`): a runtime's first block pays once for
/// loading and choosing each kernel, growing the device allocator and compiling, and without it the first requests would.
/// It goes to the model's scheduler directly: nothing is persisted, and no tenant or job sees it.
/// </summary>
internal static class WarmUp
{
    /// <summary>The requests: greedy, random token ids after the model's BOS, within the model's context.</summary>
    public static IReadOnlyList<SchedulerProtocol.WorkItem> Requests(WarmUpSettings settings, ModelConfig config)
    {
        var context = config.MaxPositionEmbeddings;
        var generate = Math.Min(settings.GenerationLength, context - 1);
        var prompt = Math.Min(settings.PromptLength, context - generate);
        var random = new Random(0);
        return Enumerable.Range(0, settings.Requests).Select(i =>
        {
            var ids = new int[prompt];
            ids[0] = config.BosTokenId;
            for (var j = 1; j < prompt; j++) ids[j] = random.Next(3, config.VocabSize);
            var request = new CompletionRequest { Prompt = Prompt.FromIds(ids), MaxTokens = generate, Temperature = 0, IgnoreEos = true };
            return new SchedulerProtocol.WorkItem($"warm-up-{i}", $"warm-up-{i}", request, Seed: i);
        }).ToArray();
    }

    /// <summary>Runs the warm-up job on <paramref name="scheduler"/> and waits for it (nothing when it has no requests).</summary>
    public static void Run(ActorSystem system, IActorRef scheduler, string model, WarmUpSettings settings, ModelConfig config)
    {
        if (settings.Requests <= 0) return;
        var log = Logging.GetLogger(system, "warm-up");
        var requests = Requests(settings, config);
        var first = requests[0].Request;
        var watch = Stopwatch.StartNew();
        var results = ScheduledWork.Run(system, scheduler, requests, TimeSpan.FromHours(1));
        // A request the node could not run (no policy fits the budgets before the scheduler's memory wait ends) answers
        // with an error: the node serves all the same, unwarmed.
        var failed = results.Where(CompletionJson.IsErrorLine).ToArray();
        if (failed.Length > 0)
        {
            log.Warning("{0}: {1} of {2} warm-up requests failed; the node serves unwarmed ({3})", model, failed.Length, requests.Count, failed[0]);
            return;
        }
        log.Info("{0}: warmed up by {1} requests of {2} + {3} tokens in {4:F2} s", model, requests.Count,
            first.Prompt.TokenIds!.Count, first.MaxTokens, watch.Elapsed.TotalSeconds);
    }
}
