using System.Buffers;
using System.Text;
using System.Text.Unicode;
using ActorInfer.Actors.Jobs;
using ActorInfer.Model.Generation;
using Microsoft.AspNetCore.Http;

namespace ActorInfer.Gateway;

/// <summary>
/// A job's JSONL body, parsed line by line as it arrives and never held whole. Bad input costs little: once the body
/// has more invalid lines than allowed, more lines than the tenant may queue, a line longer than a completion body
/// may be, or bytes that are not UTF-8, the job is refused whole (400, nothing persisted) and the rest of the body is
/// read and dropped without being parsed, so the client reads the answer instead of a reset connection.
/// </summary>
public static class JobBody
{
    /// <param name="MaxLines">The most lines (valid or not) the job may hold: what its tenant may queue.</param>
    public sealed record Limits(long MaxBodyBytes, long MaxLineBytes, int MaxInvalidLines, int MaxLines, string Tenant)
    {
        /// <summary>
        /// A node of several models: each served model's name and factory. A line is checked against the model it names,
        /// and a line that names none is given <see cref="JobModel"/> (so that the node runs it on that model); null: one model.
        /// </summary>
        public IReadOnlyDictionary<string, CompletionFactory>? Models { get; init; }

        /// <summary>The model of the lines that name none (<c>?model=</c>, or the node's default model).</summary>
        public string? JobModel { get; init; }
    }

    /// <summary>How many invalid lines a refusal names.</summary>
    public const int NamedInvalidLines = 5;

    public static async Task<List<JobProtocol.JobEntry>> ReadAsync(HttpRequest request, Limits limits, CompletionFactory factory, long requestSeed)
    {
        if (request.ContentLength is { } length && length > limits.MaxBodyBytes) throw ApiError.TooLarge(limits.MaxBodyBytes);
        var lines = new Lines(limits, factory, requestSeed);
        var reader = request.BodyReader;
        long consumed = 0;
        while (true)
        {
            var result = await reader.ReadAsync(request.HttpContext.RequestAborted);
            var buffer = result.Buffer;
            if (consumed + buffer.Length > limits.MaxBodyBytes)
                throw ApiError.TooLarge(limits.MaxBodyBytes);
            if (lines.Refusal is null)
            {
                while (lines.Refusal is null && buffer.PositionOf((byte)'\n') is { } newline)
                {
                    lines.Add(buffer.Slice(0, newline));
                    var next = buffer.GetPosition(1, newline);
                    consumed += buffer.Slice(0, next).Length;
                    buffer = buffer.Slice(next);
                }
                if (lines.Refusal is null && buffer.Length > limits.MaxLineBytes) lines.LineTooLong();
                if (lines.Refusal is null && result.IsCompleted && buffer.Length > 0) lines.Add(buffer);
            }
            if (lines.Refusal is not null)
            {
                // Dropped unparsed: only counted against the body limit.
                consumed += buffer.Length;
                buffer = buffer.Slice(buffer.End);
            }
            reader.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted) break;
        }
        if (lines.Refusal is { } refusal) throw refusal;
        return lines.Entries;
    }

    private sealed class Lines(Limits limits, CompletionFactory factory, long requestSeed)
    {
        private readonly List<string> _firstInvalid = [];
        private int _number;
        private int _invalid;

        public List<JobProtocol.JobEntry> Entries { get; } = [];
        public ApiError? Refusal { get; private set; }

        public void Add(ReadOnlySequence<byte> line)
        {
            _number++;
            RequestValidationException? invalid = null;
            ReadOnlySpan<byte> bytes = line.IsSingleSegment ? line.FirstSpan : line.ToArray();
            if (bytes.Length > 0 && bytes[^1] == (byte)'\r') bytes = bytes[..^1];
            if (!Utf8.IsValid(bytes))
            {
                Refusal = ApiError.BadRequest("body", $"the body is not UTF-8 text (line {_number})");
                return;
            }
            var raw = Encoding.UTF8.GetString(bytes);
            var entry = limits.Models is { } models ? ModelEntry(raw, models, out invalid) : JobProtocol.Entry(raw, _number, factory, requestSeed, out invalid);
            if (entry is null) return;
            if (invalid is not null)
            {
                _invalid++;
                if (_firstInvalid.Count < NamedInvalidLines)
                    _firstInvalid.Add($"line {_number}{(string.IsNullOrEmpty(invalid.Param) ? "" : $" ({invalid.Param})")}: {invalid.Message}");
                if (_invalid > limits.MaxInvalidLines)
                {
                    Refusal = ApiError.BadRequest("body",
                        $"the job has more than {limits.MaxInvalidLines} invalid lines and is refused whole; the first: {string.Join("; ", _firstInvalid)}",
                        "too_many_invalid_lines");
                    return;
                }
            }
            Entries.Add(entry);
            if (Entries.Count > limits.MaxLines)
                Refusal = ApiError.BadRequest("body",
                    $"the job holds more than {limits.MaxLines} requests (invalid lines included), more than tenant '{limits.Tenant}' may queue: split the job",
                    "too_many_requests_in_job");
        }

        /// <summary>A line on a node of several models: checked against the model it names (the job's when none).</summary>
        private JobProtocol.JobEntry? ModelEntry(string raw, IReadOnlyDictionary<string, CompletionFactory> models, out RequestValidationException? invalid)
        {
            invalid = null;
            if (string.IsNullOrWhiteSpace(raw)) return null;
            var named = Actors.Node.ModelRouterProtocol.ModelOf(raw);
            var model = named ?? limits.JobModel!;
            if (!models.TryGetValue(model, out var modelFactory))
            {
                invalid = new RequestValidationException("model", UnknownModel.Message(model, models.Keys));
                var id = $"line-{_number}";
                return new JobProtocol.JobEntry(id, null, requestSeed + _number, CompletionJson.ErrorLine(id, _number, "model", invalid.Message));
            }
            // Named in the persisted request: the node hands each request to the model it names.
            if (named is null && Parsed(raw) is { } obj && !obj.ContainsKey("model"))
            {
                obj["model"] = model;
                raw = obj.ToJsonString();
            }
            return JobProtocol.Entry(raw, _number, modelFactory, requestSeed, out invalid);
        }

        // Not JSON (or not an object): the request parser says why, with the line.
        private static System.Text.Json.Nodes.JsonObject? Parsed(string raw)
        {
            try
            {
                return System.Text.Json.Nodes.JsonNode.Parse(raw) as System.Text.Json.Nodes.JsonObject;
            }
            catch (System.Text.Json.JsonException)
            {
                return null;
            }
        }

        public void LineTooLong() =>
            Refusal = ApiError.BadRequest("body", $"line {_number + 1} is longer than {limits.MaxLineBytes} bytes, the largest completion body");
    }
}
