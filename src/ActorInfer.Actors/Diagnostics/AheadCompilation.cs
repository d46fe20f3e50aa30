using System.Reflection;
using System.Runtime.CompilerServices;

namespace ActorInfer.Actors.Diagnostics;

/// <summary>
/// Code that runs rarely and must be quick the first time it runs: the answer to a budget change (planning the new
/// policy, dropping batches, requeueing them, re-placing weights, honouring). Compiled just in time, its first run
/// would pay for the compiling inside the time to honour; <see cref="Prepare"/> compiles it ahead, off the tensor
/// thread, when a node starts. Under tiered compilation this reaches non-virtual methods only: interface
/// implementations and generic instantiations compile on their first call, so <see cref="BudgetFallWarmup"/> then runs a
/// fall once on a miniature of its own (what it does not reach, the honour records count).
/// </summary>
public static class AheadCompilation
{
    private static readonly Lock Gate = new();
    private static Task<int>? _running;
    private static CancellationTokenSource? _cancel;

    /// <summary>Starts compiling them in the background (once per process); the task ends with the count of methods compiled.</summary>
    public static Task<int> Prepare()
    {
        lock (Gate)
        {
            if (_running is not null) return Task.FromResult(0);
            _cancel = new CancellationTokenSource();
            var token = _cancel.Token;
            _running = Task.Run(() => PrepareAll(token));
            return _running;
        }
    }

    /// <summary>
    /// Stops the warm-up and waits for it. The rehearsal issues tensor work on a pool thread: run beside libtorch's
    /// exit handlers it crashes the process, so every program calls this before it returns. A later
    /// <see cref="Prepare"/> starts again.
    /// </summary>
    public static void Stop()
    {
        Task<int>? running;
        lock (Gate)
        {
            running = _running;
            _cancel?.Cancel();
            _running = null;
        }
        // The warm-up handles its own failures (it reports them); here only its end matters.
        running?.ContinueWith(_ => { }, TaskScheduler.Default).Wait();
    }

    private static int PrepareAll(CancellationToken token)
    {
        // The path crosses the actors, the runtime, the planning and the model's generation state: all of their code.
        var assemblies = new[]
        {
            typeof(AheadCompilation).Assembly, typeof(Runtime.Schedule.OffloadRuntime).Assembly, typeof(Planning.Policy).Assembly,
            typeof(Model.Generation.SequenceState).Assembly,
        };
        var prepared = 0;
        foreach (var type in assemblies.SelectMany(a => a.GetTypes()).Where(t => !t.ContainsGenericParameters))
        {
            if (token.IsCancellationRequested) return prepared;
            prepared += PrepareMethods(type);
        }
        if (token.IsCancellationRequested) return prepared;
        try
        {
            BudgetFallWarmup.Run();
        }
        catch (Exception ex)
        {
            // Only the first real fall's compiling is at stake; still, say so rather than hide it.
            Console.Error.WriteLine($"the rehearsal of a budget fall failed (the first fall compiles its code itself): {ex.Message}");
        }
        return prepared;
    }

    /// <summary>Compiles a type's own methods and constructors (its lambdas' closures are nested types, listed on their own).</summary>
    private static int PrepareMethods(Type type)
    {
        const BindingFlags all = BindingFlags.DeclaredOnly | BindingFlags.Instance | BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic;
        var count = 0;
        foreach (var method in type.GetMethods(all).Cast<MethodBase>().Concat(type.GetConstructors(all)))
        {
            if (method.IsAbstract || method.ContainsGenericParameters || method.GetMethodBody() is null) continue;
            try
            {
                RuntimeHelpers.PrepareMethod(method.MethodHandle);
                count++;
            }
            catch (Exception)
            {
                // A method the runtime cannot compile ahead (e.g. one needing instantiation) compiles when first called.
            }
        }
        return count;
    }
}
