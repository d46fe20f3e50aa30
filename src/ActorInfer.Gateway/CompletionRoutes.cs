using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using ActorInfer.Actors.Jobs;
using ActorInfer.Model.Generation;
using Akka.Actor;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace ActorInfer.Gateway;

/// <summary>
/// <c>POST /v1/completions</c> and <c>GET /v1/models</c>. A completion is a one-request job: persisted before
/// anything is answered, so a node restart runs it again. Streaming sends SSE chunks, one per token, then
/// <c>data: [DONE]</c>, as the scheduler (the node's, or a cluster worker's) chooses them (<see cref="TokenStreams"/>):
/// an echoed prompt first, each token's log-probability where asked, text that could begin a stop sequence held back for
/// the tokens after it; what did not go out before the result (a gap, text held back) goes with it.
/// </summary>
public static class CompletionRoutes
{
    public static void Map(IEndpointRouteBuilder app, GatewayContext g)
    {
        app.MapGet("/v1/models", () => TypedResults.Json(new
        {
            @object = "list",
            // max_model_len as vLLM names it, and the vocabulary: what a client needs to make token-id prompts that fit.
            data = g.ServedModelNames.Select(id => new
            {
                id, @object = "model", created = Created, owned_by = "actorinfer",
                max_model_len = g.FactoryOf(id).Config.MaxPositionEmbeddings, vocab_size = g.FactoryOf(id).Config.VocabSize,
            }).ToArray(),
        })).WithMetadata(new RouteAccess(Access.AnyKey));

        app.MapPost("/v1/completions", (Func<HttpContext, Task<IResult>>)(http => Complete(http, g))).WithMetadata(new RouteAccess(Access.Tenant));
    }

    private static readonly long Created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    private static async Task<IResult> Complete(HttpContext http, GatewayContext g)
    {
        var tenant = http.Tenant();
        var keyedId = IdempotencyKey.JobId(http.Request, tenant.Name, "cmpl-");
        var body = await RequestBody.ReadAsync(http.Request, g.Http.MaxBodyBytes);
        var input = CompletionInput.Parse(body, g.ServedModelNames);
        var factory = g.FactoryOf(input.Model);
        // Without a seed a sampled completion gets a fresh one, persisted with it so that a rerun after a restart
        // samples the same tokens.
        var seed = input.Request.Seed ?? Random.Shared.NextInt64(0, long.MaxValue);
        try
        {
            factory.Create(input.Request, seed);
        }
        catch (RequestValidationException ex)
        {
            throw ApiError.BadRequest(ex.Param, ex.Message);
        }

        var id = keyedId ?? "cmpl-" + Guid.NewGuid().ToString("N");
        var result = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var started = DateTime.UtcNow;
        // Open before the job is admitted: its first tokens may land before the stream starts.
        var live = input.Stream ? g.TokenStreams.Open(JobKey(id)) : null;
        try
        {
            var admitted = await Admit(g, new GatewayProtocol.Admit(tenant.Name, tenant.MaxQueuedRequests, id,
                [new JobProtocol.JobEntry(id, input.Json, seed, null)], tenant.Priority, "completion", result));
            if (admitted.AlreadyKnown) await AnswerFinished(g, id, result);
        }
        catch
        {
            live?.Dispose();
            throw;
        }
        // A stream the client leaves before it is read stops keeping tokens with the request.
        if (live is not null) http.Response.RegisterForDispose(live);

        var output = new CompletionOutput(id, input.Model, DateTimeOffset.UtcNow.ToUnixTimeSeconds(), factory)
        {
            Echo = input.Request.Echo,
            Stops = input.Request.Stop,
            WantLogprobs = input.Request.Logprobs is not null,
            PromptText = input.Request.Prompt.Text ?? factory.Decode(input.Request.Prompt.TokenIds ?? []),
        };
        if (input.Stream) return TypedResults.ServerSentEvents(Stream(g, id, result, output, input.IncludeUsage, started, live, http.RequestAborted));
        var line = await Await(g, id, result, http.RequestAborted);
        var completion = output.Completion(line);
        Observe(g, completion, started);
        return TypedResults.Text(completion.ToJsonString(), "application/json");
    }

    /// <summary>The scheduler's key of a one-request job's request (as the job actor names it).</summary>
    private static string JobKey(string jobId) => $"{jobId}#0";

    private static async IAsyncEnumerable<SseItem<string>> Stream(GatewayContext g, string id, TaskCompletionSource<string> result,
        CompletionOutput output, bool includeUsage, DateTime started, TokenStreams.Subscription? live, [EnumeratorCancellation] CancellationToken cancel)
    {
        var finished = Await(g, id, result, cancel);
        DateTime? firstToken = null;
        var opened = false;
        // Tokens that landed by the time the result came are sent as their own chunks too (read once more after it); on a
        // cluster a step's tokens may still arrive after the result, and then ride in the result's chunk.
        if (live is not null)
            using (live)
                while (true)
                {
                    while (live.Reader.TryRead(out var tokens))
                        foreach (var chunk in output.LiveChunks(tokens.From, tokens.Ids, tokens.Logprobs))
                        {
                            if (output.SentTokens) firstToken ??= DateTime.UtcNow;
                            opened = true;
                            yield return new SseItem<string>(chunk.ToJsonString());
                        }
                    if (finished.IsCompleted) break;
                    await Task.WhenAny(finished, live.Reader.WaitToReadAsync(cancel).AsTask());
                }
        var chunks = new List<string>();
        string? error = null;
        try
        {
            var line = await finished;
            foreach (var chunk in output.Chunks(line, includeUsage)) chunks.Add(chunk.ToJsonString());
            Observe(g, output.Completion(line), started, firstToken);
        }
        // Before the first event nothing is sent, and an error is the response's status (a 504 past the completion timeout);
        // after it the 200 and its headers are out, and the error travels as an event, as OpenAI's streams do, rather than
        // tearing the connection down.
        catch (ApiError e) when (opened)
        {
            error = e.ToJson();
        }
        catch (InvalidOperationException e) when (opened)
        {
            // A failed completion, or a result that does not begin with the tokens streamed.
            error = new ApiError(StatusCodes.Status500InternalServerError, "server_error", null, "internal_error", e.Message).ToJson();
        }
        if (error is not null) yield return new SseItem<string>(error);
        foreach (var chunk in chunks) yield return new SseItem<string>(chunk);
        yield return new SseItem<string>("[DONE]");
    }

    /// <summary>
    /// A retried completion whose job has finished already: its result is the first line of the job's results (the
    /// job store reports a completion only once, when it finishes). An unfinished one is answered when it finishes.
    /// </summary>
    private static async Task AnswerFinished(GatewayContext g, string id, TaskCompletionSource<string> result)
    {
        var status = await g.Node.Jobs.Ask<JobProtocol.JobStatus>(new JobProtocol.GetJob(id), g.AskTimeout);
        if (!status.IsComplete) return;
        g.Gateway.Tell(new GatewayProtocol.Forget(id, result));
        try
        {
            using var lines = File.ReadLines(Path.Combine(g.Node.Settings.ResultsDir, id + ".jsonl")).GetEnumerator();
            if (lines.MoveNext()) result.TrySetResult(lines.Current);
            else result.TrySetException(new InvalidOperationException($"job {id} has no result line"));
        }
        catch (FileNotFoundException)
        {
            // It expired between the status and the read: its result is gone (a retry after this runs it again).
            throw JobRoutes.Gone(id);
        }
    }

    /// <param name="firstToken">When a streamed completion's first token went out; null: with the result.</param>
    private static void Observe(GatewayContext g, JsonObject completion, DateTime started, DateTime? firstToken = null)
    {
        var elapsed = (DateTime.UtcNow - started).TotalSeconds;
        var tokens = completion["usage"]?["completion_tokens"]?.GetValue<int>() ?? 0;
        g.Metrics.TimeToFirstToken.Observe(((firstToken ?? DateTime.UtcNow) - started).TotalSeconds);
        if (tokens > 0) g.Metrics.PerTokenLatency.Observe(elapsed / tokens);
    }

    /// <summary>Hands work to the gateway actor; returns once it is persisted, or throws 429.</summary>
    internal static async Task<GatewayProtocol.Admitted> Admit(GatewayContext g, GatewayProtocol.Admit admit)
    {
        var answer = await g.Gateway.Ask<object>(admit, g.AskTimeout);
        return answer switch
        {
            GatewayProtocol.Admitted a => a,
            GatewayProtocol.Refused { Never: true } r => throw ApiError.BadRequest("body", r.Reason, "too_many_requests_in_job"),
            GatewayProtocol.Refused r => throw ApiError.TooManyRequests(r.Reason, g.Http.RetryAfter),
            _ => throw new InvalidOperationException($"unexpected answer {answer}"),
        };
    }

    private static async Task<string> Await(GatewayContext g, string id, TaskCompletionSource<string> result, CancellationToken cancel)
    {
        try
        {
            return await result.Task.WaitAsync(g.Http.CompletionTimeout, cancel);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
            // The job stays persisted and runs; only this wait ends.
            g.Gateway.Tell(new GatewayProtocol.Forget(id, result));
            if (ex is TimeoutException)
                throw new ApiError(StatusCodes.Status504GatewayTimeout, "timeout_error", null, "completion_timeout",
                    $"no result within {g.Http.CompletionTimeout}; the request is persisted and still runs");
            throw;
        }
    }
}
