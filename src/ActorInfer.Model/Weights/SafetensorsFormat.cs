using System.Buffers.Binary;
using System.Text.Json;
using TorchSharp;

namespace ActorInfer.Model.Weights;

/// <summary>One tensor's entry in a safetensors header; <see cref="DataOffset"/> is absolute in the file.</summary>
public sealed record SafetensorsEntry(string Name, torch.ScalarType Dtype, long[] Shape, long DataOffset, long ByteLength);

/// <summary>
/// The safetensors layout: an 8-byte little-endian header length, a JSON header mapping names to dtype, shape
/// and data offsets (relative to the end of the header), then the raw little-endian tensor bytes.
/// </summary>
internal static class SafetensorsFormat
{
    /// <summary>The format's own cap; a larger length means a corrupt or foreign file, not a big header.</summary>
    public const long MaxHeaderBytes = 100L * 1024 * 1024;

    public const string MetadataKey = "__metadata__";

    private static readonly (string Code, torch.ScalarType Type)[] Dtypes =
    [
        ("F16", torch.ScalarType.Float16), ("BF16", torch.ScalarType.BFloat16), ("F32", torch.ScalarType.Float32),
        ("F64", torch.ScalarType.Float64), ("I64", torch.ScalarType.Int64), ("I32", torch.ScalarType.Int32),
        ("I16", torch.ScalarType.Int16), ("I8", torch.ScalarType.Int8), ("U8", torch.ScalarType.Byte),
        ("BOOL", torch.ScalarType.Bool),
    ];

    public static bool TryDtype(string code, out torch.ScalarType type)
    {
        foreach (var (c, t) in Dtypes)
        {
            if (c != code) continue;
            type = t;
            return true;
        }
        type = default;
        return false;
    }

    public static string Code(torch.ScalarType type)
    {
        foreach (var (c, t) in Dtypes)
            if (t == type) return c;
        throw new NotSupportedException($"safetensors has no dtype code for {type}");
    }

    public static int ElementSize(torch.ScalarType type) => type switch
    {
        torch.ScalarType.Float64 or torch.ScalarType.Int64 => 8,
        torch.ScalarType.Float32 or torch.ScalarType.Int32 => 4,
        torch.ScalarType.Float16 or torch.ScalarType.BFloat16 or torch.ScalarType.Int16 => 2,
        torch.ScalarType.Int8 or torch.ScalarType.Byte or torch.ScalarType.Bool => 1,
        _ => throw new NotSupportedException($"safetensors has no dtype code for {type}"),
    };

    /// <summary>Reads and checks the header of <paramref name="path"/> against the file's length.</summary>
    public static IReadOnlyList<SafetensorsEntry> ReadHeader(Microsoft.Win32.SafeHandles.SafeFileHandle file, string path)
    {
        var fileLength = RandomAccess.GetLength(file);
        if (fileLength < 8)
            throw new InvalidDataException($"safetensors file {path} is truncated: {fileLength} bytes, no header");
        Span<byte> lengthBytes = stackalloc byte[8];
        ReadExactly(file, lengthBytes, 0, path, "the header length");
        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength > MaxHeaderBytes || (long)headerLength > fileLength - 8)
            throw new InvalidDataException(
                $"safetensors file {path} has a corrupt header: it claims {headerLength} header bytes " +
                $"in a file of {fileLength} bytes");

        var header = new byte[headerLength];
        ReadExactly(file, header, 8, path, "the header");
        var dataStart = 8 + (long)headerLength;
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"safetensors file {path} has a corrupt header: {e.Message}", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"safetensors file {path} has a corrupt header: not a JSON object");
            var entries = new List<SafetensorsEntry>();
            foreach (var property in doc.RootElement.EnumerateObject())
            {
                if (property.Name == MetadataKey) continue;
                entries.Add(ParseEntry(property, path, dataStart, fileLength));
            }
            return entries;
        }
    }

    /// <summary>Fills <paramref name="buffer"/> from <paramref name="offset"/>; a short file is an error naming <paramref name="what"/>.</summary>
    public static void ReadExactly(
        Microsoft.Win32.SafeHandles.SafeFileHandle file, Span<byte> buffer, long offset, string path, string what)
    {
        while (!buffer.IsEmpty)
        {
            var read = RandomAccess.Read(file, buffer, offset);
            if (read == 0)
                throw new InvalidDataException($"safetensors file {path} is truncated: it ends inside {what}");
            buffer = buffer[read..];
            offset += read;
        }
    }

    private static SafetensorsEntry ParseEntry(JsonProperty property, string path, long dataStart, long fileLength)
    {
        var name = property.Name;
        InvalidDataException Bad(string what) =>
            new($"safetensors file {path}: tensor {name} {what}");
        var value = property.Value;
        if (value.ValueKind != JsonValueKind.Object) throw Bad("has no header object");

        if (!value.TryGetProperty("dtype", out var dtypeJson) || dtypeJson.ValueKind != JsonValueKind.String)
            throw Bad("lacks a dtype");
        var code = dtypeJson.GetString()!;
        if (!TryDtype(code, out var dtype)) throw Bad($"has unsupported dtype '{code}'");

        if (!value.TryGetProperty("shape", out var shapeJson) || shapeJson.ValueKind != JsonValueKind.Array)
            throw Bad("lacks a shape");
        var shape = new long[shapeJson.GetArrayLength()];
        var i = 0;
        foreach (var dim in shapeJson.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out var d) || d < 0)
                throw Bad($"has an invalid shape {shapeJson.GetRawText()}");
            shape[i++] = d;
        }

        if (!value.TryGetProperty("data_offsets", out var offsetsJson) || offsetsJson.ValueKind != JsonValueKind.Array
            || offsetsJson.GetArrayLength() != 2
            || !offsetsJson[0].TryGetInt64(out var begin) || !offsetsJson[1].TryGetInt64(out var end)
            || begin < 0 || end < begin)
            throw Bad("has invalid data_offsets");

        long expected;
        try
        {
            expected = checked(shape.Aggregate(1L, (n, d) => checked(n * d)) * ElementSize(dtype));
        }
        catch (OverflowException)
        {
            throw Bad($"has an impossible shape {shapeJson.GetRawText()}");
        }
        if (end - begin != expected)
            throw Bad($"spans {end - begin} bytes but its shape {shapeJson.GetRawText()} of {code} needs {expected}");
        if (dataStart + end > fileLength)
            throw new InvalidDataException(
                $"safetensors file {path} is truncated: tensor {name} ends at byte {dataStart + end} " +
                $"but the file has {fileLength}");
        return new SafetensorsEntry(name, dtype, shape, dataStart + begin, expected);
    }
}
