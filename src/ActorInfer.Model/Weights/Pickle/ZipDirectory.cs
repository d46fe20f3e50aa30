using System.Buffers.Binary;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace ActorInfer.Model.Weights.Pickle;

/// <summary>One member of a zip file: where its bytes start in the file, and how many there are (stored members only).</summary>
internal sealed record ZipMember(string Name, long DataOffset, long Length, bool Stored);

/// <summary>
/// The central directory of a zip file (ZIP64 included), read without decompressing anything: PyTorch stores each
/// tensor storage as an uncompressed member, so a tensor is read in place with positioned reads, never the archive whole.
/// </summary>
internal static class ZipDirectory
{
    private const uint EndOfDirectory = 0x06054b50, Zip64EndOfDirectory = 0x06064b50, Zip64Locator = 0x07064b50;
    private const uint DirectoryEntry = 0x02014b50, LocalHeader = 0x04034b50;

    public static Dictionary<string, ZipMember> Read(SafeFileHandle file, string path)
    {
        var length = RandomAccess.GetLength(file);
        // The end record is in the last 22 bytes plus a comment of at most 65535.
        var tailLength = (int)Math.Min(length, 22 + 65535);
        var tail = Bytes(file, length - tailLength, tailLength, path);
        var end = -1;
        for (var i = tail.Length - 22; i >= 0; i--)
            if (BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(i)) == EndOfDirectory) { end = i; break; }
        if (end < 0) throw new InvalidDataException($"{path} is not a zip archive (no end of central directory)");
        long entries = BinaryPrimitives.ReadUInt16LittleEndian(tail.AsSpan(end + 10));
        long directorySize = BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(end + 12));
        long directoryOffset = BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(end + 16));
        if (end >= 20 && BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(end - 20)) == Zip64Locator)
        {
            var recordOffset = (long)BinaryPrimitives.ReadUInt64LittleEndian(tail.AsSpan(end - 20 + 8));
            var record = Bytes(file, recordOffset, 56, path);
            if (BinaryPrimitives.ReadUInt32LittleEndian(record) != Zip64EndOfDirectory)
                throw new InvalidDataException($"{path}: the ZIP64 end of central directory is missing");
            entries = (long)BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(32));
            directorySize = (long)BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(40));
            directoryOffset = (long)BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(48));
        }
        if (directoryOffset < 0 || directorySize < 0 || directoryOffset + directorySize > length || directorySize > int.MaxValue)
            throw new InvalidDataException($"{path}: the zip central directory lies outside the file");
        var directory = Bytes(file, directoryOffset, (int)directorySize, path);
        var members = new Dictionary<string, ZipMember>(StringComparer.Ordinal);
        var at = 0;
        for (long n = 0; n < entries; n++)
        {
            if (at + 46 > directory.Length || BinaryPrimitives.ReadUInt32LittleEndian(directory.AsSpan(at)) != DirectoryEntry)
                throw new InvalidDataException($"{path}: zip central directory entry {n} is malformed");
            var method = BinaryPrimitives.ReadUInt16LittleEndian(directory.AsSpan(at + 10));
            long compressed = BinaryPrimitives.ReadUInt32LittleEndian(directory.AsSpan(at + 20));
            long size = BinaryPrimitives.ReadUInt32LittleEndian(directory.AsSpan(at + 24));
            int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(directory.AsSpan(at + 28));
            int extraLength = BinaryPrimitives.ReadUInt16LittleEndian(directory.AsSpan(at + 30));
            int commentLength = BinaryPrimitives.ReadUInt16LittleEndian(directory.AsSpan(at + 32));
            long localOffset = BinaryPrimitives.ReadUInt32LittleEndian(directory.AsSpan(at + 42));
            if (at + 46 + nameLength + extraLength > directory.Length)
                throw new InvalidDataException($"{path}: zip central directory entry {n} runs past the directory");
            var name = Encoding.UTF8.GetString(directory, at + 46, nameLength);
            // ZIP64 keeps the sizes and offset that do not fit 32 bits in an extra field, in this order.
            var extra = directory.AsSpan(at + 46 + nameLength, extraLength);
            while (extra.Length >= 4)
            {
                var id = BinaryPrimitives.ReadUInt16LittleEndian(extra);
                var fieldLength = BinaryPrimitives.ReadUInt16LittleEndian(extra[2..]);
                var field = extra.Slice(4, Math.Min(fieldLength, extra.Length - 4));
                if (id == 1)
                {
                    var k = 0;
                    if (size == uint.MaxValue && k + 8 <= field.Length) { size = (long)BinaryPrimitives.ReadUInt64LittleEndian(field[k..]); k += 8; }
                    if (compressed == uint.MaxValue && k + 8 <= field.Length) { compressed = (long)BinaryPrimitives.ReadUInt64LittleEndian(field[k..]); k += 8; }
                    if (localOffset == uint.MaxValue && k + 8 <= field.Length) localOffset = (long)BinaryPrimitives.ReadUInt64LittleEndian(field[k..]);
                }
                extra = extra[Math.Min(extra.Length, 4 + fieldLength)..];
            }
            var local = Bytes(file, localOffset, 30, path);
            if (BinaryPrimitives.ReadUInt32LittleEndian(local) != LocalHeader)
                throw new InvalidDataException($"{path}: zip member {name} has no local header");
            var dataOffset = localOffset + 30 + BinaryPrimitives.ReadUInt16LittleEndian(local.AsSpan(26)) + BinaryPrimitives.ReadUInt16LittleEndian(local.AsSpan(28));
            if (dataOffset + compressed > length)
                throw new InvalidDataException($"{path}: zip member {name} runs past the end of the file");
            members[name] = new ZipMember(name, dataOffset, method == 0 ? size : compressed, Stored: method == 0);
            at += 46 + nameLength + extraLength + commentLength;
        }
        return members;
    }

    public static byte[] Bytes(SafeFileHandle file, long offset, int count, string path)
    {
        var buffer = new byte[count];
        var done = 0;
        while (done < count)
        {
            var read = RandomAccess.Read(file, buffer.AsSpan(done), offset + done);
            if (read == 0) throw new InvalidDataException($"{path} ends early (reading {count} bytes at {offset})");
            done += read;
        }
        return buffer;
    }
}
