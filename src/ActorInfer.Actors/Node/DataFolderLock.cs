using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace ActorInfer.Actors.Node;

/// <summary>A second node was started on a data folder that a running node holds; nothing in the folder was read.</summary>
public sealed class DataFolderLockedException(string dataDir, string holder)
    : IOException($"the data folder {dataDir} is in use by another node ({holder}); stop it or pick another --data-dir")
{
    public string DataDir { get; } = dataDir;

    /// <summary>What the holder wrote into the lock file: its pid, host and start time.</summary>
    public string Holder { get; } = holder;
}

/// <summary>
/// One owner per data folder: an exclusive OS lock on <c>DATA/node.lock</c>, taken before anything in the folder is
/// read and held until the node is disposed (the OS drops it when the process dies, SIGKILL included, so a crash
/// never leaves the folder locked). Two nodes on one journal would both recover and run the same pending requests and
/// collide on the journal's sequence numbers.
/// </summary>
public sealed class DataFolderLock : IDisposable
{
    public const string FileName = "node.lock";

    /// <summary>
    /// Lock files this process holds. POSIX record locks belong to a process, so the OS would grant this process the
    /// same folder twice, and closing the second handle would drop the first one's lock: the process refuses itself.
    /// </summary>
    private static readonly HashSet<string> HeldHere = new(StringComparer.Ordinal);

    private static readonly Lock Gate = new();

    private readonly FileStream _file;
    private readonly string _path;
    private bool _released;

    private DataFolderLock(FileStream file, string path)
    {
        _file = file;
        _path = path;
    }

    /// <summary>Takes the folder's lock (creating the folder), or throws <see cref="DataFolderLockedException"/> naming the holder.</summary>
    public static DataFolderLock Acquire(string dataDir)
    {
        // The node is built for Linux (its runtime identifier); macOS has no byte-range locks through FileStream.
        if (OperatingSystem.IsMacOS()) throw new PlatformNotSupportedException("the data folder lock needs Linux or Windows");
        Directory.CreateDirectory(dataDir);
        var path = Path.GetFullPath(Path.Combine(dataDir, FileName));
        lock (Gate)
        {
            if (HeldHere.Contains(path)) throw new DataFolderLockedException(dataDir, Owner() + " (this process)");
            // A byte-range lock (fcntl) rather than FileShare.None (flock): an flock-ed file cannot even be opened for
            // reading by .NET, and the refused node has to read who holds the folder.
            var file = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite);
            try
            {
                file.Lock(0, long.MaxValue);
            }
            catch (IOException)
            {
                var holder = ReadHolder(file);
                file.Dispose();
                throw new DataFolderLockedException(dataDir, holder);
            }
            try
            {
                file.SetLength(0);
                file.Write(Encoding.UTF8.GetBytes(Owner() + "\n"));
                file.Flush(flushToDisk: true);
            }
            catch
            {
                file.Dispose();
                throw;
            }
            HeldHere.Add(path);
            return new DataFolderLock(file, path);
        }
    }

    private static string Owner() => string.Create(CultureInfo.InvariantCulture,
        $"pid {Environment.ProcessId}, host {Environment.MachineName}, since {Process.GetCurrentProcess().StartTime.ToUniversalTime():yyyy-MM-ddTHH:mm:ssZ}");

    private static string ReadHolder(FileStream file)
    {
        try
        {
            file.Position = 0;
            var buffer = new byte[512];
            var read = file.Read(buffer);
            var text = Encoding.UTF8.GetString(buffer, 0, read).Trim();
            return text.Length > 0 ? text : "holder unknown: the lock file is empty";
        }
        catch (IOException ex)
        {
            return $"holder unknown: {ex.Message}";
        }
    }

    public void Dispose()
    {
        lock (Gate)
        {
            if (_released) return;
            _released = true;
            HeldHere.Remove(_path);
            _file.Dispose();
        }
    }
}
