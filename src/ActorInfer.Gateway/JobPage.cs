using System.Globalization;
using ActorInfer.Actors.Jobs;
using Microsoft.AspNetCore.Http;

namespace ActorInfer.Gateway;

/// <summary>
/// <c>GET /v1/jobs?limit=N&amp;after=ID</c>, paged as OpenAI's list endpoints are: newest first, at most
/// <see cref="MaxLimit"/> a page (<see cref="DefaultLimit"/> without a limit), the next page after the last id of this one.
/// </summary>
public sealed record JobPage(int Limit, string? After)
{
    public const int DefaultLimit = 20;
    public const int MaxLimit = 100;

    public static JobPage From(IQueryCollection query)
    {
        foreach (var key in query.Keys)
            if (key is not ("limit" or "after")) throw ApiError.BadRequest(key, $"unknown query parameter '{key}'");
        var limit = DefaultLimit;
        if (query.TryGetValue("limit", out var l)
            && (l.Count != 1 || !int.TryParse(l[0], NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit is < 1 or > MaxLimit))
            throw ApiError.BadRequest("limit", $"limit must be an integer from 1 to {MaxLimit} (got '{l}')");
        string? after = null;
        if (query.TryGetValue("after", out var a))
        {
            if (a.Count != 1 || string.IsNullOrEmpty(a[0])) throw ApiError.BadRequest("after", "after must be one job id");
            after = a[0];
        }
        return new JobPage(limit, after);
    }

    /// <summary>This page of <paramref name="jobs"/> (the tenant's, oldest first as the job store lists them).</summary>
    public (IReadOnlyList<JobProtocol.JobStatus> Jobs, bool HasMore) Of(IReadOnlyList<JobProtocol.JobStatus> jobs)
    {
        var start = jobs.Count - 1;
        if (After is not null)
        {
            var at = -1;
            for (var i = 0; i < jobs.Count; i++)
                if (jobs[i].JobId == After) at = i;
            // Another tenant's id is as unknown as one that never existed.
            if (at < 0) throw ApiError.BadRequest("after", $"no job '{After}' to page after");
            start = at - 1;
        }
        var page = new List<JobProtocol.JobStatus>(Math.Min(Limit, start + 1));
        for (var i = start; i >= 0 && page.Count < Limit; i--) page.Add(jobs[i]);
        return (page, start + 1 > page.Count);
    }
}
