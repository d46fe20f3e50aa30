using ActorInfer.Model.Layers;

namespace ActorInfer.Model.Tests.Layers;

/// <summary>
/// The switch reaches libtorch's own attention settings by mangled C++ names, which a libtorch with other names would
/// break silently: the binding itself is checked (the CPU libtorch carries the same context).
/// </summary>
public sealed class CudaAttentionBackendsTests
{
    [Fact]
    public void CuDNN_s_attention_is_switched_off_and_on_in_libtorch_s_own_context()
    {
        CudaAttentionBackends.UseCudnn(false);
        Assert.False(CudaAttentionBackends.CudnnEnabled);
        CudaAttentionBackends.UseCudnn(true);
        Assert.True(CudaAttentionBackends.CudnnEnabled);
    }
}
