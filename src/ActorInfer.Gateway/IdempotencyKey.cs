using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;

namespace ActorInfer.Gateway;

/// <summary>
/// <c>Idempotency-Key</c> on <c>POST /v1/completions</c> and <c>POST /v1/jobs</c>: the job id is derived from the
/// tenant, the route and the key, so a retry names the job the first attempt persisted (before a crash too, since
/// the id is persisted with the job) and the job store acknowledges it again instead of running it twice. A retry
/// gets the first attempt's job, whatever body it sends.
/// </summary>
public static class IdempotencyKey
{
    public const string Header = "Idempotency-Key";
    public const int MaxLength = 255;

    /// <summary>The job id for the request's key with <paramref name="prefix"/>; null when the request has no key.</summary>
    public static string? JobId(HttpRequest request, string tenant, string prefix)
    {
        if (!request.Headers.TryGetValue(Header, out var values)) return null;
        if (values.Count != 1) throw ApiError.BadRequest(Header, $"send one {Header} header (got {values.Count})");
        var key = values[0] ?? "";
        if (key.Length is 0 or > MaxLength || key.Any(c => c is < '!' or > '~'))
            throw ApiError.BadRequest(Header, $"{Header} must be 1 to {MaxLength} visible ASCII characters");
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes($"{tenant}\n{prefix}\n{key}"));
        return prefix + Convert.ToHexStringLower(hash)[..32];
    }
}
