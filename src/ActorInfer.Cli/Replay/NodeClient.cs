using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace ActorInfer.Cli.Replay;

/// <summary>A served model as <c>GET /v1/models</c> lists it.</summary>
public sealed record ServedModelInfo(string Id, int MaxModelLen, int VocabSize);

/// <summary>What one streamed completion took (seconds from its send), or why it failed.</summary>
public sealed record RequestOutcome(bool Completed, double? Ttft, double EndToEnd, int Tokens, string? Error)
{
    /// <summary>Time per output token after the first; null with fewer than two tokens.</summary>
    public double? Tpot => Completed && Ttft is { } first && Tokens > 1 ? (EndToEnd - first) / (Tokens - 1) : null;
}

/// <summary>The node's HTTP gateway as the replay uses it: the models it serves, streamed completions, its state and metrics.</summary>
public sealed class NodeClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly string _url;

    public NodeClient(string url, string key, TimeSpan requestTimeout)
    {
        _url = url.TrimEnd('/');
        // Every request of a burst goes out at its time: no cap on connections to the node.
        _http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = int.MaxValue, PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30) })
        {
            BaseAddress = new Uri(_url + "/"),
            Timeout = requestTimeout,
        };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
    }

    public async Task<IReadOnlyList<ServedModelInfo>> Models()
    {
        using var doc = JsonDocument.Parse(await Get("v1/models"));
        return doc.RootElement.GetProperty("data").EnumerateArray().Select(m => new ServedModelInfo(m.GetProperty("id").GetString()!,
            m.TryGetProperty("max_model_len", out var len) ? len.GetInt32() : 2048,
            m.TryGetProperty("vocab_size", out var vocab) ? vocab.GetInt32() : 50272)).ToArray();
    }

    /// <summary><c>GET /admin/state</c> (an admin key); null when the key is not one.</summary>
    public async Task<JsonDocument?> State()
    {
        using var response = await _http.GetAsync("admin/state");
        if (!response.IsSuccessStatusCode) return null;
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync());
    }

    /// <summary>The node's counters (<c>GET /metrics</c>, an admin key) by name, summed over labels; empty when refused.</summary>
    public async Task<IReadOnlyDictionary<string, double>> Counters()
    {
        using var response = await _http.GetAsync("metrics");
        var counters = new Dictionary<string, double>();
        if (!response.IsSuccessStatusCode) return counters;
        foreach (var line in (await response.Content.ReadAsStringAsync()).Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#') continue;
            var space = line.LastIndexOf(' ');
            if (space <= 0 || !double.TryParse(line[(space + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out var value)) continue;
            var name = line[..space];
            var brace = name.IndexOf('{');
            if (brace >= 0) name = name[..brace];
            counters[name] = counters.GetValueOrDefault(name) + value;
        }
        return counters;
    }

    /// <summary>Sends one completion with <c>stream: true</c> and reads its events: the first token's time and the last's.</summary>
    public async Task<RequestOutcome> Stream(string model, IReadOnlyList<int> prompt, int maxTokens, CancellationToken cancel)
    {
        var body = JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["model"] = model, ["prompt"] = prompt, ["max_tokens"] = maxTokens, ["temperature"] = 0, ["ignore_eos"] = true,
            ["stream"] = true, ["stream_options"] = new Dictionary<string, object> { ["include_usage"] = true },
        });
        var watch = Stopwatch.StartNew();
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "v1/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel);
            if (!response.IsSuccessStatusCode)
                return new RequestOutcome(false, null, watch.Elapsed.TotalSeconds, 0, $"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancel)}");
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel));
            double? first = null;
            var tokens = 0;
            int? usage = null;
            while (await reader.ReadLineAsync(cancel) is { } line)
            {
                if (!line.StartsWith("data:", StringComparison.Ordinal)) continue;
                var data = line[5..].Trim();
                if (data == "[DONE]") break;
                using var doc = JsonDocument.Parse(data);
                if (doc.RootElement.TryGetProperty("error", out var error))
                    return new RequestOutcome(false, first, watch.Elapsed.TotalSeconds, tokens, error.GetRawText());
                if (doc.RootElement.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object)
                    usage = u.GetProperty("completion_tokens").GetInt32();
                // A chunk per token; a token's chunk may carry no text (a special token, or one that ends inside a
                // character), so the first token is the first chunk with a choice that is not the finish alone.
                if (doc.RootElement.TryGetProperty("choices", out var choices) && choices.GetArrayLength() > 0 &&
                    choices[0].TryGetProperty("text", out var text))
                {
                    var finish = choices[0].TryGetProperty("finish_reason", out var f) && f.ValueKind == JsonValueKind.String;
                    if (text.GetString() is { Length: > 0 } || !finish)
                    {
                        first ??= watch.Elapsed.TotalSeconds;
                        tokens++;
                    }
                }
            }
            var total = watch.Elapsed.TotalSeconds;
            return new RequestOutcome(true, first ?? total, total, usage ?? tokens, null);
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or IOException or JsonException)
        {
            return new RequestOutcome(false, null, watch.Elapsed.TotalSeconds, 0, ex.Message);
        }
    }

    private async Task<string> Get(string path)
    {
        HttpResponseMessage response;
        try
        {
            response = await _http.GetAsync(path);
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            throw new CliException($"--url {_url}: {ex.Message}");
        }
        using (response)
        {
            var text = await response.Content.ReadAsStringAsync();
            if (!response.IsSuccessStatusCode) throw new CliException($"--url {_url}: GET /{path} answered {(int)response.StatusCode}: {text}");
            return text;
        }
    }

    public void Dispose() => _http.Dispose();
}
