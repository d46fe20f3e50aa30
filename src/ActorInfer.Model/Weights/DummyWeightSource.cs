using ActorInfer.Model.Config;
using TorchSharp;

namespace ActorInfer.Model.Weights;

/// <summary>
/// Random weights of a config's shapes, for benchmarks and tests without a checkpoint. Each tensor is drawn on
/// demand on the target device from its own generator, seeded by <see cref="Seed"/> and the tensor's name, so a
/// tensor's values do not depend on load order. Values are normal * <see cref="Std"/> (norm weights 1 and
/// biases 0), small enough that activations stay finite in float16.
/// </summary>
public sealed class DummyWeightSource : IWeightSource
{
    public const double Std = 0.02;

    private static readonly Lock CudaSeedLock = new();
    private readonly Dictionary<string, long[]> _shapes;

    public DummyWeightSource(ModelConfig config, long seed = 0)
    {
        Config = config ?? throw new ArgumentNullException(nameof(config));
        Seed = seed;
        _shapes = WeightSourceValidation.ExpectedTensors(config).ToDictionary(t => t.Name, t => t.Shape);
    }

    public ModelConfig Config { get; }

    public long Seed { get; }

    /// <summary>Every tensor name the config needs, global tensors first.</summary>
    public IEnumerable<string> Names => _shapes.Keys;

    public bool Contains(string name) => _shapes.ContainsKey(WeightName.Canonical(name));

    public long[] Shape(string name) => (long[])ShapeOf(name).Clone();

    public torch.Tensor Load(string name, torch.ScalarType dtype, torch.Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        var canonical = WeightName.Canonical(name);
        var shape = ShapeOf(canonical);
        if (Config.Architecture.IsNorm(canonical))
        {
            return canonical.EndsWith(".weight", StringComparison.Ordinal)
                ? torch.ones(shape, dtype, device)
                : torch.zeros(shape, dtype, device);
        }
        // Drawing tens of gigabytes on the CPU takes minutes; where a GPU exists, draw there and copy the result.
        if (device.type == DeviceType.CPU && torch.cuda.is_available())
        {
            using var drawn = Load(canonical, dtype, torch.CUDA);
            return drawn.cpu();
        }
        // CPU kernels for reduced-precision normal sampling are missing or slow; draw in float32 there.
        var drawType = device.type == DeviceType.CPU || !IsFloat(dtype) ? torch.ScalarType.Float32 : dtype;
        torch.Tensor values;
        if (device.type == DeviceType.CUDA)
        {
            // TorchSharp's Generator is a CPU generator; CUDA draws take the device's default one, seeded per tensor.
            lock (CudaSeedLock)
            {
                torch.cuda.manual_seed((long)(TensorSeed(canonical) & long.MaxValue));
                values = torch.randn(shape, drawType, device).mul_(Std);
            }
        }
        else
        {
            using var generator = new torch.Generator(TensorSeed(canonical), device);
            values = torch.randn(shape, drawType, device, generator: generator).mul_(Std);
        }
        if (values.dtype == dtype) return values;
        using (values)
        {
            return values.to(dtype);
        }
    }

    public void Dispose()
    {
    }

    private long[] ShapeOf(string name) =>
        _shapes.TryGetValue(WeightName.Canonical(name), out var shape)
            ? shape
            : throw new InvalidDataException($"config {Config.Name} has no tensor {name}");

    private static bool IsFloat(torch.ScalarType dtype) => dtype is torch.ScalarType.Float16
        or torch.ScalarType.BFloat16 or torch.ScalarType.Float32 or torch.ScalarType.Float64;

    /// <summary>FNV-1a of the name mixed with the seed: stable across processes, unlike string.GetHashCode.</summary>
    private ulong TensorSeed(string name)
    {
        var hash = 14695981039346656037UL ^ (ulong)Seed;
        foreach (var c in name)
        {
            hash ^= c;
            hash *= 1099511628211UL;
        }
        return hash;
    }
}
