using System.Globalization;
using ActorInfer.Actors.Jobs;
using Akka.Actor;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace ActorInfer.Gateway;

/// <summary>
/// Batch jobs: a JSONL body, one completion request per line as `actorinfer generate` reads them; results as
/// `generate --keep-going` writes them (a bad line gets its error line in its place, a request without a seed gets
/// request-seed + its line number). A tenant sees only its own jobs: another tenant's id is 404.
/// </summary>
public static class JobRoutes
{
    public static void Map(IEndpointRouteBuilder app, GatewayContext g)
    {
        var access = new RouteAccess(Access.Tenant);
        app.MapPost("/v1/jobs", (Func<HttpContext, Task<IResult>>)(http => Submit(http, g))).WithMetadata(access);
        app.MapGet("/v1/jobs", async (HttpContext http) =>
        {
            var page = JobPage.From(http.Request.Query);
            var list = await g.Node.Jobs.Ask<JobProtocol.JobList>(new JobProtocol.ListJobs(http.Tenant().Name), g.AskTimeout);
            var (jobs, hasMore) = page.Of(list.Jobs);
            return TypedResults.Json(new
            {
                @object = "list",
                data = jobs.Select(View).ToArray(),
                first_id = jobs.Count > 0 ? jobs[0].JobId : null,
                last_id = jobs.Count > 0 ? jobs[^1].JobId : null,
                has_more = hasMore,
            });
        }).WithMetadata(access);
        app.MapGet("/v1/jobs/{id}", async (HttpContext http, string id) => TypedResults.Json(View(await Owned(http, g, id)))).WithMetadata(access);
        app.MapGet("/v1/jobs/{id}/results", async (HttpContext http, string id) =>
        {
            var job = await Owned(http, g, id);
            if (!job.IsComplete)
                throw ApiError.Conflict("id", $"job {id} is {job.State}: results are served once every request has finished", "job_not_finished");
            // Streamed from disk: a results file can be far larger than what a request should hold in memory. Opened
            // here, so that a job expiring meanwhile (its file deleted) is a 404 and an open file is served whole.
            FileStream file;
            try
            {
                file = new FileStream(Path.Combine(g.Node.Settings.ResultsDir, id + ".jsonl"), FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete,
                    bufferSize: 1, FileOptions.SequentialScan);
            }
            catch (FileNotFoundException)
            {
                throw Gone(id);
            }
            return TypedResults.Stream(file, "application/jsonl; charset=utf-8");
        }).WithMetadata(access);
        app.MapDelete("/v1/jobs/{id}", async (HttpContext http, string id) =>
        {
            await Owned(http, g, id);
            var status = await g.Node.Jobs.Ask<JobProtocol.JobStatus>(new JobProtocol.CancelJob(id), g.AskTimeout);
            return TypedResults.Json(View(status));
        }).WithMetadata(access);
    }

    private static async Task<IResult> Submit(HttpContext http, GatewayContext g)
    {
        var tenant = http.Tenant();
        var priority = tenant.Priority;
        if (http.Request.Query.TryGetValue("priority", out var p))
        {
            if (p.Count != 1 || !int.TryParse(p[0], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var asked))
                throw ApiError.BadRequest("priority", $"priority must be one integer (got '{p}')");
            // A tenant key asks within its tenant's max-priority (capped, not refused); an admin key sets any priority.
            priority = http.IsAdmin() ? asked : tenant.CapPriority(asked);
        }
        foreach (var key in http.Request.Query.Keys)
            if (key is not ("priority" or "model")) throw ApiError.BadRequest(key, $"unknown query parameter '{key}'");
        // The model of the lines that name none: ?model=NAME, or the node's default model.
        var jobModel = g.ServedModelNames[0];
        if (http.Request.Query.TryGetValue("model", out var m))
        {
            if (m.Count != 1 || string.IsNullOrEmpty(m[0])) throw ApiError.BadRequest("model", "model must be one model name");
            if (!g.ServedModelNames.Contains(m[0]!)) throw UnknownModel.Error(m[0]!, g.ServedModelNames);
            jobModel = m[0]!;
        }
        var keyedId = IdempotencyKey.JobId(http.Request, tenant.Name, "job-");
        var entries = await JobBody.ReadAsync(http.Request,
            new JobBody.Limits(g.Http.MaxJobBodyBytes, g.Http.MaxBodyBytes, g.Http.MaxInvalidJobLines, tenant.MaxQueuedRequests, tenant.Name)
            {
                Models = g.Node.Settings.ServesSeveralModels ? g.Node.Models.ToDictionary(x => x.Name, x => x.Factory) : null,
                JobModel = jobModel,
            },
            g.Node.Factory, g.Node.Settings.RequestSeed);
        if (entries.Count == 0) throw ApiError.BadRequest("body", "the job holds no requests (one JSON request per line)");

        var id = keyedId ?? "job-" + Guid.NewGuid().ToString("N");
        var admitted = await CompletionRoutes.Admit(g, new GatewayProtocol.Admit(tenant.Name, tenant.MaxQueuedRequests, id, entries, priority, "job", null));
        var invalid = entries.Count(e => e.RequestJson is null);
        if (admitted.AlreadyKnown)
        {
            // A retry with the same idempotency key: the job the first attempt persisted, as it stands.
            var known = await g.Node.Jobs.Ask<JobProtocol.JobStatus>(new JobProtocol.GetJob(id), g.AskTimeout);
            return TypedResults.Json(new { id, @object = "job", state = known.State, priority = known.Priority, requests = known.Total - known.Failed,
                invalid = known.Failed });
        }
        return TypedResults.Json(new { id, @object = "job", state = "queued", priority, requests = entries.Count - invalid, invalid });
    }

    /// <summary>The job if the caller's tenant owns it; 404 otherwise, whether it exists or not.</summary>
    private static async Task<JobProtocol.JobStatus> Owned(HttpContext http, GatewayContext g, string id)
    {
        var tenant = http.Tenant();
        var status = await g.Node.Jobs.Ask<JobProtocol.JobStatus>(new JobProtocol.GetJob(id), g.AskTimeout);
        if (!status.Known || status.Tenant != tenant.Name) throw Gone(id);
        return status;
    }

    /// <summary>Unknown, another tenant's, or finished longer ago than the retention (actorinfer.jobs.retention): all alike.</summary>
    internal static ApiError Gone(string id) => ApiError.NotFound("id", $"no job '{id}' (finished jobs are kept for the node's retention time only)", "job_not_found");

    private static object View(JobProtocol.JobStatus s) => new
    {
        id = s.JobId,
        @object = "job",
        state = s.State,
        priority = s.Priority,
        // checkpointed: pending requests whose progress is persisted (dropped under memory pressure), resumed from there after a restart.
        counts = new { total = s.Total, completed = s.Done - s.Failed, failed = s.Failed, pending = s.Total - s.Done, checkpointed = s.Checkpointed },
        progress = s.Total == 0 ? 1.0 : (double)s.Done / s.Total,
    };
}
