using TorchSharp;

namespace ActorInfer.Model.Weights;

/// <summary>
/// Where a model's tensors come from: a checkpoint on disk (read tensor by tensor, never whole) or random
/// "dummy" weights. Names are the architecture's checkpoint keys (without the <c>model.</c> prefix).
/// </summary>
public interface IWeightSource : IDisposable
{
    bool Contains(string name);

    /// <summary>The stored shape of a tensor; throws <see cref="InvalidDataException"/> naming it when absent.</summary>
    long[] Shape(string name);

    /// <summary>Reads one tensor, converted to <paramref name="dtype"/>, onto <paramref name="device"/>.</summary>
    torch.Tensor Load(string name, torch.ScalarType dtype, torch.Device device);
}
