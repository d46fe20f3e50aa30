using Microsoft.AspNetCore.Http;

namespace ActorInfer.Gateway;

public static class RequestBody
{
    /// <summary>The whole body, or 413 once it passes <paramref name="limit"/> bytes (by Content-Length or as read).</summary>
    public static async Task<byte[]> ReadAsync(HttpRequest request, long limit)
    {
        if (request.ContentLength is { } length && length > limit) throw ApiError.TooLarge(limit);
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, request.HttpContext.RequestAborted)) > 0)
        {
            if (buffer.Length + read > limit) throw ApiError.TooLarge(limit);
            buffer.Write(chunk, 0, read);
        }
        return buffer.ToArray();
    }
}
