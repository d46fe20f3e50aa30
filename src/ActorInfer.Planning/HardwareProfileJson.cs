using System.Text.Json;

namespace ActorInfer.Planning;

/// <summary>The keys of the profile file, as dotted paths; error messages name them.</summary>
public static class HardwareProfileKeys
{
    public const string Name = "name";
    public const string Source = "source";
    public const string GpuMemory = "memory.gpu_bytes";
    public const string CpuMemory = "memory.cpu_bytes";
    public const string Disk = "memory.disk_bytes";
    public const string CpuToGpu = "bandwidth.cpu_to_gpu_bytes_per_s";
    public const string CpuToGpuCache = "bandwidth.cpu_to_gpu_cache_bytes_per_s";
    public const string GpuToCpu = "bandwidth.gpu_to_cpu_bytes_per_s";
    public const string GpuToCpuCache = "bandwidth.gpu_to_cpu_cache_bytes_per_s";
    public const string DiskToCpu = "bandwidth.disk_to_cpu_bytes_per_s";
    public const string DiskToCpuCache = "bandwidth.disk_to_cpu_cache_bytes_per_s";
    public const string CpuToDisk = "bandwidth.cpu_to_disk_bytes_per_s";
    public const string CpuToDiskCache = "bandwidth.cpu_to_disk_cache_bytes_per_s";
    public const string GpuMatmulPrefill = "compute.gpu_matmul_prefill_flops";
    public const string GpuMatmulDecode = "compute.gpu_matmul_decode_flops";
    public const string GpuBatchedMatmulPrefill = "compute.gpu_bmm_prefill_flops";
    public const string GpuBatchedMatmulDecode = "compute.gpu_bmm_decode_flops";
    public const string CpuAttention = "compute.cpu_attention_flops";
    public const string CpuAttentionCodes = "compute.cpu_attention_codes_flops";
    public const string GpuMemoryBandwidth = "bandwidth.gpu_memory_bytes_per_s";
    public const string GpuBatchOverhead = "compute.gpu_batch_overhead_s";
    public const string GpuMatmulDecodeTokens = "compute.gpu_matmul_decode_tokens";
    public const string FitBatchAndHidden = "cpu_attention_fit.batch_and_hidden";
    public const string FitBatch = "cpu_attention_fit.batch";
    public const string FitHidden = "cpu_attention_fit.hidden";
}

/// <summary>
/// Reads and writes a <see cref="HardwareProfile"/> as JSON: <c>name</c>, <c>source</c>, and the groups
/// <c>memory</c> (bytes), <c>bandwidth</c> (bytes/s), <c>compute</c> (FLOP/s) and optionally
/// <c>cpu_attention_fit</c>. A cache bandwidth left out equals its bulk bandwidth. Unknown keys are errors,
/// so that a misspelt rate is never silently replaced by a default.
/// </summary>
public static class HardwareProfileJson
{
    private static readonly Dictionary<string, string[]> KnownKeys = new()
    {
        [""] = ["name", "source", "memory", "bandwidth", "compute", "cpu_attention_fit"],
        ["memory"] = ["gpu_bytes", "cpu_bytes", "disk_bytes"],
        ["bandwidth"] =
        [
            "cpu_to_gpu_bytes_per_s", "cpu_to_gpu_cache_bytes_per_s", "gpu_to_cpu_bytes_per_s", "gpu_to_cpu_cache_bytes_per_s",
            "disk_to_cpu_bytes_per_s", "disk_to_cpu_cache_bytes_per_s", "cpu_to_disk_bytes_per_s", "cpu_to_disk_cache_bytes_per_s", "gpu_memory_bytes_per_s",
        ],
        ["compute"] = ["gpu_matmul_prefill_flops", "gpu_matmul_decode_flops", "gpu_bmm_prefill_flops", "gpu_bmm_decode_flops", "cpu_attention_flops", "cpu_attention_codes_flops", "gpu_batch_overhead_s", "gpu_matmul_decode_tokens"],
        ["cpu_attention_fit"] = ["batch_and_hidden", "batch", "hidden"],
    };

    public static HardwareProfile Load(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot read hardware profile '{path}': {ex.Message}", ex);
        }
        try
        {
            return Parse(text);
        }
        catch (InvalidDataException ex)
        {
            throw new InvalidDataException($"hardware profile '{path}': {ex.Message}", ex);
        }
    }

    public static HardwareProfile Parse(string json)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"not valid JSON: {ex.Message}", ex);
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException("the profile must be a JSON object");
            RejectUnknownKeys(root, "");
            foreach (var group in KnownKeys.Keys.Where(k => k.Length > 0))
            {
                if (root.TryGetProperty(group, out var element))
                {
                    if (element.ValueKind != JsonValueKind.Object)
                        throw new InvalidDataException($"'{group}' must be an object");
                    RejectUnknownKeys(element, group);
                }
            }

            var cpuToGpu = Number(root, HardwareProfileKeys.CpuToGpu);
            var gpuToCpu = Number(root, HardwareProfileKeys.GpuToCpu);
            var diskToCpu = Number(root, HardwareProfileKeys.DiskToCpu);
            var cpuToDisk = Number(root, HardwareProfileKeys.CpuToDisk);
            var profile = new HardwareProfile
            {
                Name = Text(root, HardwareProfileKeys.Name, required: true)!,
                Source = Text(root, HardwareProfileKeys.Source, required: false),
                GpuMemoryBytes = WholeNumber(root, HardwareProfileKeys.GpuMemory),
                CpuMemoryBytes = WholeNumber(root, HardwareProfileKeys.CpuMemory),
                DiskBytes = WholeNumber(root, HardwareProfileKeys.Disk),
                CpuToGpuBytesPerSecond = cpuToGpu,
                CpuToGpuCacheBytesPerSecond = Number(root, HardwareProfileKeys.CpuToGpuCache, cpuToGpu),
                GpuToCpuBytesPerSecond = gpuToCpu,
                GpuToCpuCacheBytesPerSecond = Number(root, HardwareProfileKeys.GpuToCpuCache, gpuToCpu),
                DiskToCpuBytesPerSecond = diskToCpu,
                DiskToCpuCacheBytesPerSecond = Number(root, HardwareProfileKeys.DiskToCpuCache, diskToCpu),
                CpuToDiskBytesPerSecond = cpuToDisk,
                CpuToDiskCacheBytesPerSecond = Number(root, HardwareProfileKeys.CpuToDiskCache, cpuToDisk),
                GpuMatmulPrefillFlops = Number(root, HardwareProfileKeys.GpuMatmulPrefill),
                GpuMatmulDecodeFlops = Number(root, HardwareProfileKeys.GpuMatmulDecode),
                GpuBatchedMatmulPrefillFlops = Number(root, HardwareProfileKeys.GpuBatchedMatmulPrefill),
                GpuBatchedMatmulDecodeFlops = Number(root, HardwareProfileKeys.GpuBatchedMatmulDecode),
                CpuAttentionFlops = Number(root, HardwareProfileKeys.CpuAttention),
                GpuMemoryBytesPerSecond = Number(root, HardwareProfileKeys.GpuMemoryBandwidth),
                GpuBatchOverheadSeconds = Number(root, HardwareProfileKeys.GpuBatchOverhead, 0, allowZero: true),
                GpuMatmulDecodeTokens = Number(root, HardwareProfileKeys.GpuMatmulDecodeTokens, 0, allowZero: true),
                CpuAttentionCodesFlops = Number(root, HardwareProfileKeys.CpuAttentionCodes, 0, allowZero: true),
                CpuAttentionFit = root.TryGetProperty("cpu_attention_fit", out _)
                    ? new CpuAttentionFit(
                        Number(root, HardwareProfileKeys.FitBatchAndHidden, 0, allowZero: true),
                        Number(root, HardwareProfileKeys.FitBatch, 0, allowZero: true),
                        Number(root, HardwareProfileKeys.FitHidden, 0, allowZero: true))
                    : null,
            };
            try
            {
                return profile.Validate();
            }
            catch (ArgumentException ex)
            {
                throw new InvalidDataException(ex.Message, ex);
            }
        }
    }

    public static void Save(HardwareProfile profile, string path) => File.WriteAllText(path, Serialize(profile));

    public static string Serialize(HardwareProfile profile)
    {
        profile.Validate();
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            writer.WriteStartObject();
            writer.WriteString("name", profile.Name);
            if (profile.Source is not null)
                writer.WriteString("source", profile.Source);
            var groups = profile.Values().GroupBy(v => v.Key.Split('.')[0]);
            foreach (var group in groups)
            {
                writer.WriteStartObject(group.Key);
                foreach (var (key, value) in group)
                    writer.WriteNumber(key.Split('.')[1], value);
                foreach (var (key, value) in profile.OptionalValues())
                    if (value > 0 && key.Split('.')[0] == group.Key)
                        writer.WriteNumber(key.Split('.')[1], value);
                writer.WriteEndObject();
            }
            if (profile.CpuAttentionFit is { } fit)
            {
                writer.WriteStartObject("cpu_attention_fit");
                writer.WriteNumber("batch_and_hidden", fit.BatchAndHidden);
                writer.WriteNumber("batch", fit.Batch);
                writer.WriteNumber("hidden", fit.Hidden);
                writer.WriteEndObject();
            }
            writer.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(stream.ToArray()) + Environment.NewLine;
    }

    private static void RejectUnknownKeys(JsonElement element, string group)
    {
        foreach (var property in element.EnumerateObject())
        {
            if (!KnownKeys[group].Contains(property.Name))
            {
                var path = group.Length == 0 ? property.Name : $"{group}.{property.Name}";
                throw new InvalidDataException($"unknown key '{path}'; expected one of {string.Join(", ", KnownKeys[group])}");
            }
        }
    }

    private static JsonElement? Find(JsonElement root, string key)
    {
        var element = root;
        foreach (var part in key.Split('.'))
        {
            if (element.ValueKind != JsonValueKind.Object || !element.TryGetProperty(part, out element))
                return null;
        }
        return element;
    }

    private static string? Text(JsonElement root, string key, bool required)
    {
        var element = Find(root, key);
        if (element is null)
            return required ? throw new InvalidDataException($"missing key '{key}'") : null;
        if (element.Value.ValueKind != JsonValueKind.String)
            throw new InvalidDataException($"'{key}' must be a string");
        return element.Value.GetString();
    }

    private static double Number(JsonElement root, string key, double? fallback = null, bool allowZero = false)
    {
        var element = Find(root, key);
        if (element is null)
            return fallback ?? throw new InvalidDataException($"missing key '{key}'");
        if (element.Value.ValueKind != JsonValueKind.Number || !element.Value.TryGetDouble(out var value) || double.IsInfinity(value))
            throw new InvalidDataException($"'{key}' must be a number, got {element.Value.GetRawText()}");
        if (value < 0 || (!allowZero && value == 0))
            throw new InvalidDataException($"'{key}' must be {(allowZero ? "non-negative" : "positive")}, got {value}");
        return value;
    }

    private static long WholeNumber(JsonElement root, string key)
    {
        var value = Number(root, key);
        if (value > long.MaxValue || value != Math.Floor(value))
            throw new InvalidDataException($"'{key}' must be a whole number of bytes, got {value}");
        return (long)value;
    }
}
