using ActorInfer.Model.Layers;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Schedule;

/// <summary>
/// Copies in flight and the buffers they read or write; <see cref="Complete"/> waits for them and frees what
/// they kept alive. Disk transfers run on the calling thread with positional file I/O, through a CPU staging
/// lease when the device is not the CPU.
/// </summary>
internal sealed class Transfers(ICopyEngine engine, TierSet tiers) : IDisposable
{
    private readonly List<ICopyTicket> _tickets = [];
    private readonly List<IDisposable> _keepAlive = [];

    public ICopyEngine Engine => engine;
    public TierSet Tiers => tiers;

    public void Add(ICopyTicket ticket) => _tickets.Add(ticket);
    /// <summary>
    /// Keeps <paramref name="owned"/> alive until the transfers complete. A tensor is taken out of its dispose
    /// scope: the scope of the (layer, batch) that issued a copy ends before the copy is waited for.
    /// </summary>
    public void Keep(IDisposable owned)
    {
        if (owned is Tensor tensor) tensor.DetachFromDisposeScope();
        _keepAlive.Add(owned);
    }

    /// <summary>Makes compute wait for every copy here (the data is then usable; buffers stay until disposal).</summary>
    public void BeforeCompute()
    {
        foreach (var t in _tickets) engine.BeforeCompute(t);
    }

    /// <summary>
    /// Waits on the host for every copy here, for host code that reads what they wrote (CPU attention reads the
    /// queries, keys and values copied off the device: on CUDA, <see cref="BeforeCompute"/> orders only the device's
    /// work). Buffers stay until disposal.
    /// </summary>
    public void BeforeHostCompute()
    {
        foreach (var t in _tickets) t.Wait();
    }

    /// <summary>Waits for every copy and frees the buffers kept alive for them.</summary>
    public void Complete()
    {
        foreach (var t in _tickets) t.Wait();
        _tickets.Clear();
        foreach (var d in _keepAlive) d.Dispose();
        _keepAlive.Clear();
    }

    public void Dispose() => Complete();

    /// <summary>Fills <paramref name="destination"/> (any device, contiguous) from a file at <paramref name="offset"/>.</summary>
    public void ReadFile(DiskLease file, long offset, Tensor destination, string what, CopyDirection direction = CopyDirection.Load)
    {
        if (destination.device_type == TorchSharp.DeviceType.CPU)
        {
            file.ReadInto(destination, offset);
            return;
        }
        var staging = tiers.Cpu.Allocate(destination.Dims(), destination.dtype, $"staging for {what}");
        _keepAlive.Add(staging);
        file.ReadInto(staging.Tensor, offset);
        _tickets.Add(engine.CopyAsync(destination, staging.Tensor, direction));
    }

    /// <summary>Writes a tensor (any device; made contiguous) to a file at <paramref name="offset"/>, synchronously.</summary>
    public static void WriteFile(ICopyEngine engine, TierSet tiers, DiskLease file, long offset, Tensor source, string what)
    {
        using var contiguous = source.contiguous();
        if (contiguous.device_type == TorchSharp.DeviceType.CPU)
        {
            file.Write(contiguous, offset);
            return;
        }
        using var staging = tiers.Cpu.Allocate(contiguous.Dims(), contiguous.dtype, $"staging for {what}");
        engine.CopyAfter(engine.AfterCompute(), staging.Tensor, contiguous, CopyDirection.Store).Wait();
        file.Write(staging.Tensor, offset);
    }
}
