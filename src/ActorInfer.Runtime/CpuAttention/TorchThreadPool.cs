using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.CpuAttention;

/// <summary>
/// Threads that each run libtorch operations with one intra-op thread of their own, for work the caller splits
/// itself (disjoint rows of a tensor). libtorch's own parallelism splits every operation over all cores and joins
/// them after it; for a sequence of small operations the joins cost more than the work, and a thread that works
/// through its own rows keeps them in its own core's caches.
/// </summary>
public sealed class TorchThreadPool : IDisposable
{
    private readonly Thread[] _threads;
    private readonly SemaphoreSlim[] _start;
    private readonly CountdownEvent _done;
    private Action<int>? _work;
    private Exception? _error;
    private volatile bool _stopping;

    public TorchThreadPool(int count, string name)
    {
        if (count < 1) throw new ArgumentException($"a thread pool needs at least one thread, got {count}");
        _threads = new Thread[count];
        _start = new SemaphoreSlim[count];
        _done = new CountdownEvent(count);
        var processThreads = get_num_threads();
        for (var i = 0; i < count; i++)
        {
            var index = i;
            _start[i] = new SemaphoreSlim(0);
            _threads[i] = new Thread(() => Loop(index)) { IsBackground = true, Name = $"{name} {i}" };
            _threads[i].Start();
        }
        _done.Wait();
        // Without the OpenMP entry point the threads set libtorch's process-wide count, which other threads copy when
        // they first run a parallel operation: put it back (a thread starting in between would take one thread).
        if (!OpenMp.Available) set_num_threads(processThreads);
    }

    public int Count => _threads.Length;

    /// <summary>Runs <paramref name="work"/>(i) on thread i of every thread, waits for all, and rethrows the first failure.</summary>
    public void Run(Action<int> work)
    {
        ObjectDisposedException.ThrowIf(_stopping, this);
        _work = work;
        _error = null;
        _done.Reset(_threads.Length);
        foreach (var start in _start) start.Release();
        _done.Wait();
        _work = null;
        if (_error is { } error) ExceptionDispatchInfo.Capture(error).Throw();
    }

    private void Loop(int index)
    {
        // libtorch gives each thread its process-wide count when the thread first asks for it; after that the
        // thread's own OpenMP count is what its operations use.
        get_num_threads();
        if (OpenMp.Available) OpenMp.SetThisThread(1);
        else set_num_threads(1);
        _done.Signal();
        while (true)
        {
            _start[index].Wait();
            if (_stopping) return;
            try
            {
                using var scope = NewDisposeScope();
                _work!(index);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _error, e, null);
            }
            _done.Signal();
        }
    }

    public void Dispose()
    {
        if (_stopping) return;
        _stopping = true;
        foreach (var start in _start) start.Release();
        foreach (var thread in _threads) thread.Join();
        foreach (var start in _start) start.Dispose();
        _done.Dispose();
    }
}

/// <summary>The OpenMP runtime libtorch links (found through libtorch_cpu, whose copy may carry a hashed name).</summary>
internal static class OpenMp
{
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void SetNumThreads(int count);

    private static readonly SetNumThreads? Set = Resolve();

    public static bool Available => Set is not null;

    /// <summary>The calling thread's OpenMP thread count (and so libtorch's intra-op threads on it), leaving every other thread's.</summary>
    public static void SetThisThread(int count) => (Set ?? throw new InvalidOperationException("OpenMP's omp_set_num_threads was not found"))(count);

    private static SetNumThreads? Resolve()
    {
        // TorchSharp has loaded libtorch already; a bare name finds the loaded copy, and a symbol lookup through it
        // searches the libraries it depends on.
        foreach (var name in new[] { "libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu" })
        {
            if (NativeLibrary.TryLoad(name, typeof(TorchSharp.torch).Assembly, null, out var library) &&
                NativeLibrary.TryGetExport(library, "omp_set_num_threads", out var function))
                return Marshal.GetDelegateForFunctionPointer<SetNumThreads>(function);
        }
        return null;
    }
}
