using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tiers;

/// <summary>
/// Tensors stored as files in one folder, written and read with positional file I/O from and into CPU tensors
/// (pinned staging buffers when CUDA is available). The budget counts file bytes.
/// </summary>
public sealed class DiskTier : Tier
{
    private long _nextId;

    public DiskTier(string folder, long budgetBytes)
        : base(TierKind.Disk, budgetBytes)
    {
        Folder = Path.GetFullPath(folder);
        CheckWritable(Folder);
    }

    public string Folder { get; }

    /// <summary>A file of <paramref name="bytes"/> bytes in the tier's folder, held against the budget.</summary>
    public DiskLease Allocate(long bytes, string what)
    {
        Reserve(bytes, what);
        try
        {
            var path = Path.Combine(Folder, $"tensor-{Environment.ProcessId}-{Interlocked.Increment(ref _nextId)}.bin");
            var handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None,
                FileOptions.DeleteOnClose, preallocationSize: bytes);
            return new DiskLease(this, handle, path, bytes);
        }
        catch
        {
            Release(bytes);
            throw;
        }
    }

    private static void CheckWritable(string folder)
    {
        if (!Directory.Exists(folder))
            throw new DirectoryNotFoundException($"disk tier folder '{folder}' does not exist");
        // Root may write anywhere; a folder whose mode grants no write at all is read-only by the operator's intent.
        const UnixFileMode anyWrite = UnixFileMode.UserWrite | UnixFileMode.GroupWrite | UnixFileMode.OtherWrite;
        if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(folder) & anyWrite) == 0)
            throw new UnauthorizedAccessException($"disk tier folder '{folder}' is read-only");
        var probe = Path.Combine(folder, $".probe-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            File.WriteAllBytes(probe, [0]);
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UnauthorizedAccessException($"disk tier folder '{folder}' is not writable: {e.Message}", e);
        }
    }
}

/// <summary>A file on the disk tier; disposing it closes and deletes the file and gives the bytes back.</summary>
public sealed class DiskLease : IDisposable
{
    private readonly SafeFileHandle _handle;
    private bool _disposed;

    internal DiskLease(DiskTier tier, SafeFileHandle handle, string path, long bytes)
    {
        Tier = tier;
        _handle = handle;
        Path = path;
        Bytes = bytes;
    }

    public DiskTier Tier { get; }
    public string Path { get; }
    public long Bytes { get; }

    /// <summary>Writes a contiguous CPU tensor's bytes at <paramref name="offset"/>.</summary>
    public void Write(Tensor source, long offset)
    {
        var span = HostBytes.Of(source);
        CheckRange(offset, span.Length);
        RandomAccess.Write(_handle, span, offset);
    }

    /// <summary>Fills a contiguous CPU tensor from the bytes at <paramref name="offset"/>.</summary>
    public void ReadInto(Tensor destination, long offset)
    {
        var span = HostBytes.Of(destination);
        CheckRange(offset, span.Length);
        var done = 0;
        while (done < span.Length)
        {
            var n = RandomAccess.Read(_handle, span[done..], offset + done);
            if (n == 0) throw new IOException($"'{Path}' ended at {offset + done} bytes, {span.Length - done} short");
            done += n;
        }
    }

    private void CheckRange(long offset, long length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (offset < 0 || offset + length > Bytes)
            throw new ArgumentOutOfRangeException(nameof(offset), $"bytes [{offset}, {offset + length}) outside the {Bytes}-byte file '{Path}'");
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _handle.Dispose();
        Tier.Release(Bytes);
    }
}

/// <summary>The raw bytes of a contiguous CPU tensor, through the native binding TorchSharp itself uses.</summary>
internal static class HostBytes
{
    [DllImport("LibTorchSharp")]
    private static extern IntPtr THSTensor_data(IntPtr handle);

    public static unsafe Span<byte> Of(Tensor tensor)
    {
        if (tensor.device_type != TorchSharp.DeviceType.CPU) throw new ArgumentException($"file I/O needs a CPU tensor, got one on {tensor.device}");
        if (!tensor.is_contiguous()) throw new ArgumentException("file I/O needs a contiguous tensor");
        var length = tensor.NumberOfElements * tensor.ElementSize;
        if (length > int.MaxValue) throw new ArgumentException($"one file transfer is limited to 2 GiB, got {length} bytes");
        return new Span<byte>((void*)THSTensor_data(tensor.Handle), (int)length);
    }
}
