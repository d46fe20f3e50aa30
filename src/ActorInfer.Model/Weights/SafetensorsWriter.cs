using ActorInfer.Model.Layers;
using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using TorchSharp;

namespace ActorInfer.Model.Weights;

/// <summary>Writes named tensors as a standard <c>.safetensors</c> file (names sorted, data in header order).</summary>
public static class SafetensorsWriter
{
    private const int Alignment = 8;

    public static void Write(
        string path,
        IReadOnlyDictionary<string, torch.Tensor> tensors,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var names = tensors.Keys.Order(StringComparer.Ordinal).ToArray();
        var header = Header(names, tensors, metadata);

        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        stream.Write(length);
        stream.Write(header);
        foreach (var name in names) WriteData(stream, tensors[name]);
    }

    private static byte[] Header(
        string[] names, IReadOnlyDictionary<string, torch.Tensor> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject(SafetensorsFormat.MetadataKey);
                foreach (var (key, value) in metadata) json.WriteString(key, value);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var name in names)
            {
                var tensor = tensors[name];
                var bytes = tensor.numel() * SafetensorsFormat.ElementSize(tensor.dtype);
                json.WriteStartObject(name);
                json.WriteString("dtype", SafetensorsFormat.Code(tensor.dtype));
                json.WriteStartArray("shape");
                foreach (var dim in tensor.Dims()) json.WriteNumberValue(dim);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + bytes);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += bytes;
            }
            json.WriteEndObject();
        }
        // Readers may map the data section; padding the header keeps every tensor 8-byte aligned.
        var padded = (buffer.Length + Alignment - 1) / Alignment * Alignment;
        while (buffer.Length < padded) buffer.WriteByte((byte)' ');
        return buffer.ToArray();
    }

    private static void WriteData(Stream stream, torch.Tensor tensor)
    {
        if (tensor.numel() == 0) return;
        using var scope = torch.NewDisposeScope();
        var flat = tensor.detach().cpu().contiguous().view(-1);
        var chunk = Math.Max(1, SafetensorsReader.DefaultChunkBytes / SafetensorsFormat.ElementSize(tensor.dtype));
        for (long start = 0; start < flat.size(0); start += chunk)
            stream.Write(flat.narrow(0, start, Math.Min(chunk, flat.size(0) - start)).bytes);
    }
}
