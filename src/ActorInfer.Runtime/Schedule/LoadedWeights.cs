using ActorInfer.Model.Layers;
using ActorInfer.Model.Weights;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Schedule;

/// <summary>
/// A layer's weights on the device, built once into the model's weight records over the tensors themselves. The
/// records are borrowed: every GPU batch of the layer computes with the same ones, and nobody disposes them (the
/// tensors belong to their leases: the store's device homes, or this layer's working copies).
/// </summary>
/// <param name="resident">Every tensor is a device home: the store keeps these weights for later steps, and disposing them
/// does nothing.</param>
internal sealed class LoadedWeights(ScheduleLayer layer, Dictionary<string, Tensor> tensors, List<IDisposable> owned, WeightCopies pending,
    IReadOnlyList<WeightExpansion>? expansions = null, MemoryTier? device = null, ScalarType expandedType = ScalarType.Float32,
    bool resident = false, IReadOnlyDictionary<string, StreamedWeight>? streamed = null) : IDisposable
{
    /// <summary>The weights copied whole from a CPU home for this layer (by name): the copies the store may keep as new homes.</summary>
    public IReadOnlyDictionary<string, StreamedWeight> Streamed { get; } = streamed ?? NoneStreamed;

    private static readonly IReadOnlyDictionary<string, StreamedWeight> NoneStreamed = new Dictionary<string, StreamedWeight>();

    /// <summary>The layer no longer owns <paramref name="copy"/>: the store keeps it as the weight's device home.</summary>
    public void Keep(TensorLease copy) => owned.Remove(copy);

    private bool _expanded = expansions is not { Count: > 0 };

    private DecoderLayerWeights? _decoder;
    private InputWeights? _input;
    private OutputWeights? _output;

    public ScheduleLayer Layer => layer;

    /// <summary>Issues the copies not yet issued until at least <paramref name="fraction"/> of the layer's bytes from CPU memory are.</summary>
    public void IssueThrough(double fraction) => pending.IssueThrough(fraction);

    // Building a record over aliases cost two native calls per tensor, per GPU batch: a third of a decoding
    // position's host time on a GPU. Borrowed records cost none.
    public DecoderLayerWeights Decoder(ModelArchitecture a, ScalarType dtype) =>
        _decoder ??= a.LoadLayer(View(), layer.DecoderLayer, dtype, Device());

    public InputWeights Input(ModelArchitecture a, ScalarType dtype) => _input ??= a.LoadInput(View(), dtype, Device());

    public OutputWeights Output(ModelArchitecture a, ScalarType dtype) => _output ??= a.LoadOutput(View(), dtype, Device(), null);

    private Device Device() => tensors.Values.First().device;

    private BorrowedSource View()
    {
        Expand();
        return new(tensors);
    }

    /// <summary>
    /// Expands the layer's compressed weights into device buffers (held on the device tier) the first time a record is
    /// built: after the transfers' BeforeCompute, on the compute stream, once for every GPU batch of the layer.
    /// </summary>
    private void Expand()
    {
        if (_expanded) return;
        foreach (var e in expansions!)
        {
            // Not zeroed (every value is written next): a zeroed buffer would cost one more pass over the layer each step.
            var buffer = empty(e.Shape, dtype: expandedType, device: device!.Device);
            TensorLease lease;
            try
            {
                lease = device.Adopt(buffer, $"expanded weight '{e.Name}'");
            }
            catch
            {
                buffer.Dispose();
                throw;
            }
            owned.Add(lease);
            WeightCompression.DecompressInto(e.Codes, e.Ranges, lease.Tensor);
            tensors[e.Name] = lease.Tensor;
        }
        _expanded = true;
    }

    public void Dispose()
    {
        if (resident) return;
        _decoder = null;
        _input = null;
        _output = null;
        foreach (var o in owned) o.Dispose();
        owned.Clear();
    }

    /// <summary>Serves the tensors themselves, for records that are never disposed.</summary>
    private sealed class BorrowedSource(IReadOnlyDictionary<string, Tensor> tensors) : IWeightSource
    {
        public bool Contains(string name) => tensors.ContainsKey(name);

        public long[] Shape(string name) =>
            tensors.TryGetValue(name, out var t) ? t.Dims() : throw new InvalidDataException($"weight '{name}' is not in this layer");

        public Tensor Load(string name, ScalarType dtype, Device device)
        {
            var t = tensors.TryGetValue(name, out var found) ? found : throw new InvalidDataException($"weight '{name}' is not in this layer");
            if (t.dtype != dtype || t.device_type != device.type) throw new InvalidOperationException($"weight '{name}' is {t.dtype} on {t.device}, wanted {dtype} on {device}");
            return t;
        }

        public void Dispose()
        {
        }
    }
}

/// <summary>A weight copied whole to the device for one layer's compute: the device copy and the CPU home it came from.</summary>
internal sealed record StreamedWeight(TensorLease Copy, TensorLease Home);

/// <summary>A compressed weight's codes and ranges on the device, to be expanded to <see cref="Shape"/> before use.</summary>
internal sealed record WeightExpansion(string Name, long[] Shape, Tensor Codes, Tensor Ranges);
