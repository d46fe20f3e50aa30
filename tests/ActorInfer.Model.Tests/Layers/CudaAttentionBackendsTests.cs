using ActorInfer.Model.Layers;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ActorInfer.Model.Tests.Layers;

/// <summary>
/// The switch reaches libtorch's own attention settings by mangled C++ names: these break silently with a libtorch
/// whose names differ, so the binding itself is checked (the CPU libtorch carries the same context).
/// </summary>
public sealed class CudaAttentionBackendsTests
{
    [Fact]
    public void CuDNN_s_attention_is_off_once_ensured_and_attention_still_runs()
    {
        Assert.Null(CudaAttentionBackends.Ensure());
        Assert.False(CudaAttentionBackends.CudnnEnabled);
        // The other backends are untouched: masked attention still runs and matches softmax(QK^T/sqrt(d)) V.
        using var scope = NewDisposeScope();
        var g = new TorchSharp.torch.Generator(7);
        var q = randn([2, 3, 1, 8], generator: g);
        var k = randn([2, 3, 5, 8], generator: g);
        var v = randn([2, 3, 5, 8], generator: g);
        var mask = ones([2, 1, 1, 5], dtype: ScalarType.Bool);
        mask[.., .., .., 4] = tensor(false);
        var context = OptMath.Attend(q, k, v, mask);
        var scores = matmul(q, k.transpose(-1, -2)).div(Math.Sqrt(8)).masked_fill(mask.logical_not(), double.NegativeInfinity);
        var expected = matmul(F.softmax(scores, -1), v).transpose(1, 2).reshape(2, 1, -1);
        Assert.True(allclose(context, expected, rtol: 1e-5, atol: 1e-6));
    }
}
