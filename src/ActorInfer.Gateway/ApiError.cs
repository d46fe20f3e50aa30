using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace ActorInfer.Gateway;

/// <summary>
/// An error in OpenAI's shape, <c>{"error": {"message", "type", "param", "code"}}</c>, with its HTTP status.
/// Thrown by request handling and turned into the response by <see cref="GatewayApp"/>; never a 5xx for bad input.
/// </summary>
public sealed class ApiError(int status, string type, string? param, string? code, string message) : Exception(message)
{
    public int Status { get; } = status;
    public string Type { get; } = type;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    /// <summary>Seconds for a Retry-After header (429).</summary>
    public int? RetryAfterSeconds { get; init; }

    public static ApiError BadRequest(string? param, string message, string? code = null) =>
        new(StatusCodes.Status400BadRequest, "invalid_request_error", string.IsNullOrEmpty(param) ? null : param, code, message);

    public static ApiError Unauthorized(string message) =>
        new(StatusCodes.Status401Unauthorized, "authentication_error", null, "invalid_api_key", message);

    public static ApiError Forbidden(string message) =>
        new(StatusCodes.Status403Forbidden, "permission_error", null, "admin_key_required", message);

    public static ApiError NotFound(string? param, string message, string code = "not_found") =>
        new(StatusCodes.Status404NotFound, "invalid_request_error", param, code, message);

    public static ApiError Conflict(string? param, string message, string code) =>
        new(StatusCodes.Status409Conflict, "invalid_request_error", param, code, message);

    public static ApiError TooLarge(long limit) =>
        new(StatusCodes.Status413PayloadTooLarge, "invalid_request_error", "body", "body_too_large", $"the request body is larger than {limit} bytes");

    public static ApiError TooManyRequests(string message, TimeSpan retryAfter) =>
        new(StatusCodes.Status429TooManyRequests, "rate_limit_error", null, "too_many_queued_requests", message)
        {
            RetryAfterSeconds = Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds)),
        };

    public string ToJson() => JsonSerializer.Serialize(new Dictionary<string, object?>
    {
        ["error"] = new Dictionary<string, object?> { ["message"] = Message, ["type"] = Type, ["param"] = Param, ["code"] = Code },
    });

    public async Task WriteAsync(HttpResponse response)
    {
        response.StatusCode = Status;
        if (RetryAfterSeconds is { } s) response.Headers.RetryAfter = s.ToString(CultureInfo.InvariantCulture);
        // RFC 6750: a 401 names the scheme the client should authenticate with.
        if (Status == StatusCodes.Status401Unauthorized) response.Headers.WWWAuthenticate = "Bearer";
        response.ContentType = "application/json";
        await response.WriteAsync(ToJson());
    }
}
