using ActorInfer.Model.Layers;
using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Schedule;

/// <summary>
/// A GPU batch's hidden state between two schedule layers, in the tier its (layer, batch) activation is placed
/// on. A device-resident state is the compute output itself, adopted by the device tier.
/// </summary>
internal sealed class HiddenStateBuffer : IDisposable
{
    private readonly TensorLease? _memory;
    private readonly DiskLease? _file;
    private readonly ICopyTicket? _stored;
    private readonly long[] _shape;
    private readonly ScalarType _dtype;
    private readonly string _what;

    private HiddenStateBuffer(TierKind tier, TensorLease? memory, DiskLease? file, ICopyTicket? stored, long[] shape, ScalarType dtype, string what)
    {
        Tier = tier;
        _memory = memory;
        _file = file;
        _stored = stored;
        _shape = shape;
        _dtype = dtype;
        _what = what;
    }

    public TierKind Tier { get; }

    /// <summary>
    /// Stores a compute output, which it takes: a device-resident state is the output itself; a copy to the CPU keeps it alive
    /// in <paramref name="pending"/> until the copy is done.
    /// </summary>
    /// <param name="what">The state's name, for errors and the buffers made for it.</param>
    public static HiddenStateBuffer Store(Tensor output, TierKind tier, TierSet tiers, ICopyEngine engine, Transfers pending, string what)
    {
        if (tier == TierKind.Device)
            return new HiddenStateBuffer(tier, tiers.Device.Adopt(output, what), null, null, [], output.dtype, what);
        if (tier == TierKind.Disk)
        {
            using (output)
            {
                var file = tiers.RequireDisk().Allocate(output.NumberOfElements * output.ElementSize, what);
                try { Transfers.WriteFile(engine, tiers, file, 0, output, what); }
                catch { file.Dispose(); throw; }
                return new HiddenStateBuffer(tier, null, file, null, output.Dims(), output.dtype, what);
            }
        }
        // Until the copy takes it, the output belongs to the caller's dispose scope (so a failure here frees it).
        var lease = tiers.Cpu.Allocate(output.Dims(), output.dtype, what, zeroed: false);
        pending.Keep(output);
        var ticket = engine.CopyAfter(engine.AfterCompute(), lease.Tensor, output, CopyDirection.Store);
        pending.Add(ticket);
        return new HiddenStateBuffer(tier, lease, null, ticket, output.Dims(), output.dtype, what);
    }

    /// <summary>
    /// Starts bringing the state to the device. The home is handed to <paramref name="transfers"/>, which frees it
    /// once the copy is done; the returned device tensor belongs to its lease, also kept there.
    /// </summary>
    public Tensor Load(Transfers transfers)
    {
        transfers.Keep(this);
        if (_memory is { Tier.Kind: TierKind.Device }) return _memory.Tensor;
        var work = transfers.Tiers.Device.Allocate(_shape, _dtype, $"device copy of {_what}");
        transfers.Keep(work);
        if (_memory is not null)
            transfers.Add(transfers.Engine.CopyAfter(_stored!, work.Tensor, _memory.Tensor, CopyDirection.Load));
        else
            transfers.ReadFile(_file!, 0, work.Tensor, _what);
        return work.Tensor;
    }

    public void Dispose()
    {
        _memory?.Dispose();
        _file?.Dispose();
    }
}
