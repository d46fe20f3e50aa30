using ActorInfer.Model.Layers;
using static TorchSharp.torch;

namespace ActorInfer.Model.Tests.Layers;

public sealed class TensorShapeTests
{
    [Fact]
    public void DimsAndStridesMatchTorchSharpsOwnForAViewAndAScalar()
    {
        using var t = zeros(2, 3, 4);
        using var permuted = t.permute(2, 0, 1);
        using var narrowed = permuted.narrow(1, 1, 1);
        Assert.Equal(narrowed.shape, narrowed.Dims());
        Assert.Equal(narrowed.stride(), narrowed.Strides());
        Assert.Equal([4L, 1, 3], narrowed.Dims());
        Assert.Equal([1L, 12, 4], narrowed.Strides());
        using var scalar = tensor(1.5f);
        Assert.Empty(scalar.Dims());
        Assert.Empty(scalar.Strides());
    }
}
