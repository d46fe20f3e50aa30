using ActorInfer.Model.Layers;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.CpuAttention;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Schedule;

/// <summary>
/// The attention of one (decoder layer, GPU batch) running on the CPU worker (FlexGen's CPU delegation) while the
/// host goes on issuing GPU work that does not need it: the query, key and value went to the CPU after the
/// projection, the worker writes the new entry into the CPU cache and attends over it, and <see cref="Join"/>
/// brings the context back to the device for the rest of the layer. Until then it holds what that rest computes
/// from: the (layer, batch)'s loaded inputs and, once the schedule has moved to the next layer, that layer's
/// weights. Every buffer is a lease; all are given back by <see cref="Dispose"/>, which first waits for the job.
/// </summary>
internal sealed class PendingCpuAttention : IDisposable
{
    private readonly OffloadEngine _engine;
    private readonly Transfers _work;
    private readonly Transfers _inputs;
    private readonly TensorLease _context;
    private readonly Task _done;
    private LoadedWeights _weights;
    private Transfers? _ownedWeightTransfers;
    private bool _joined, _disposed;

    private PendingCpuAttention(OffloadEngine engine, BlockCursor at, GpuBatch batch, Tensor residual, Transfers inputs, LoadedWeights weights,
        Transfers work, TensorLease context, Task done)
    {
        _engine = engine;
        At = at;
        Batch = batch;
        Residual = residual;
        _inputs = inputs;
        _weights = weights;
        _work = work;
        _context = context;
        _done = done;
    }

    public BlockCursor At { get; }
    public GpuBatch Batch { get; }
    /// <summary>The (layer, batch)'s input hidden state on the device: the residual of its attention.</summary>
    public Tensor Residual { get; }
    /// <summary>The layer's weights on the device (owned once handed over by <see cref="TakeWeights"/>).</summary>
    public LoadedWeights Weights => _weights;

    /// <summary>
    /// Copies <paramref name="q"/>, <paramref name="k"/>, <paramref name="v"/> (on the device, [B, heads, 1, head_dim])
    /// to CPU leases after the compute issued so far, and queues the attention over <paramref name="cache"/> (on the
    /// CPU) on the worker. The pending takes <paramref name="inputs"/>: they stay alive until it is disposed.
    /// </summary>
    public static PendingCpuAttention Start(OffloadEngine engine, CpuAttentionWorker worker, BlockCursor at, GpuBatch batch, LoadedWeights weights,
        Tensor residual, Transfers inputs, Tensor q, Tensor k, Tensor v, LayerKv cache, int cacheIndex, Tensor? mask, Tensor? scratch, string what)
    {
        var tiers = engine.Tiers;
        var copies = engine.Copies;
        var work = new Transfers(copies, tiers);
        // The worker waits for these copies itself; their tickets are not in the transfers, so nothing waits twice.
        var arrived = new List<ICopyTicket>(3);
        TensorLease? context = null;
        try
        {
            var after = copies.AfterCompute();
            Tensor ToCpu(Tensor t, string name)
            {
                var lease = tiers.Cpu.Allocate(t.shape, t.dtype, $"{name} for CPU attention over {what}");
                work.Keep(lease);
                // The copy reads an alias, kept with the leases: the caller's tensor may be disposed before the copy runs.
                var source = t.alias();
                work.Keep(source);
                arrived.Add(copies.CopyAfter(after, lease.Tensor, source, CopyDirection.Store));
                return lease.Tensor;
            }
            var (qc, kc, vc) = (ToCpu(q, "queries"), ToCpu(k, "keys"), ToCpu(v, "values"));
            context = tiers.Cpu.Allocate([q.shape[0], 1, q.shape[1] * q.shape[3]], q.dtype, $"context of CPU attention over {what}");
            var output = context.Tensor;
            var timeline = engine.Timeline;
            var kernel = worker.Kernel;
            var pool = worker.Pool;
            var done = worker.Submit(() =>
            {
                foreach (var ticket in arrived) ticket.Wait();
                using var span = timeline?.HostSpan("host (CPU attention)", what);
                cache.Write(cacheIndex, kc, vc);
                var (keys, values) = cache.Prefix(cacheIndex + 1);
                using (keys)
                using (values)
                    kernel.Attend(qc, keys, values, mask, output, scratch, pool);
            });
            return new PendingCpuAttention(engine, at, batch, residual, inputs, weights, work, context, done);
        }
        catch
        {
            foreach (var ticket in arrived) ticket.Wait();
            work.Complete();
            context?.Dispose();
            throw;
        }
    }

    /// <summary>The schedule moves on to the next layer: this pending now owns its layer's weights and frees them when done.</summary>
    public void TakeWeights(LoadedWeights weights, Transfers transfers)
    {
        if (!ReferenceEquals(weights, _weights)) throw new InvalidOperationException($"the weights handed over are not those of {At}");
        _ownedWeightTransfers = transfers;
    }

    /// <summary>
    /// Waits for the worker, then copies the context to a device lease on the compute stream (in order with the
    /// layer's compute, not behind the weights on the load stream). The CPU context is read by that copy: it is
    /// handed to <paramref name="stores"/> with a marker after the compute issued so far, so it is freed once the
    /// copy has run. The returned tensor is the caller's handle on the device lease's storage.
    /// </summary>
    public Tensor Join(Transfers stores)
    {
        using (_engine.Timeline?.HostSpan("host (waiting for CPU attention)", $"{At} {Batch.Index}"))
            _done.GetAwaiter().GetResult();
        _joined = true;
        var back = _engine.Tiers.Device.Allocate(_context.Tensor.shape, _context.Tensor.dtype, $"context of CPU attention of {At}");
        _work.Keep(back);
        back.Tensor.copy_(_context.Tensor, true);
        stores.Keep(_context);
        stores.Add(_engine.Copies.AfterCompute());
        return back.Tensor.alias();
    }

    /// <summary>Waits for the job (a failure was reported by <see cref="Join"/>, or the step is being abandoned) and frees everything.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        // The worker may still be reading the buffers: wait for it before they go.
        try { _done.Wait(); }
        catch (AggregateException) { }
        _work.Complete();
        _inputs.Complete();
        // Once joined, the context belongs to the stores that wait for its copy to the device.
        if (!_joined) _context.Dispose();
        if (_ownedWeightTransfers is not null)
        {
            _weights.Dispose();
            _ownedWeightTransfers.Complete();
        }
    }
}
