using ActorInfer.Model.Generation;

namespace ActorInfer.Cli;

/// <summary>One input line: either a ready sequence or the reason it cannot run.</summary>
public sealed record RequestLine(int Index, int LineNumber, string Id, SequenceState? Sequence, RequestValidationException? Error);

/// <summary>Reads a JSONL request file; every line is parsed and checked before anything runs.</summary>
public static class RequestFile
{
    public static List<RequestLine> Read(string path, CompletionFactory factory)
    {
        var result = new List<RequestLine>();
        var lineNumber = 0;
        foreach (var raw in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(raw)) continue;
            var fallbackId = $"line-{lineNumber}";
            try
            {
                var request = CompletionRequestParser.Parse(raw);
                var id = request.Id ?? fallbackId;
                // Without a seed, a sampled request still gets a fixed one so that a rerun of the file is identical.
                var sequence = factory.Create(request, fallbackSeed: lineNumber);
                result.Add(new RequestLine(result.Count, lineNumber, id, sequence, null));
            }
            catch (RequestValidationException ex)
            {
                result.Add(new RequestLine(result.Count, lineNumber, fallbackId, null, ex));
            }
        }
        if (result.Count == 0) throw new CliException($"{path} holds no requests");
        return result;
    }
}
