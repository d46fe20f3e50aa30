using ActorInfer.Runtime.Copies;
using ActorInfer.Runtime.Tiers;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

/// <summary>
/// A step computes in libtorch's inference mode, whose tensors cannot be changed in place outside it: what may be written
/// outside it (a tier's buffers, reused across blocks) or by another thread (the CPU copy engine's worker) must not trip.
/// </summary>
public sealed class InferenceModeTests
{
    [Fact]
    public void A_cpu_buffer_leased_in_inference_mode_is_written_in_place_outside_it_and_again_when_reused()
    {
        var tier = MemoryTier.ForCpu(Harness.Generous);
        long[] shape = [2, 1 << 20]; // 8 MiB: the tier keeps buffers this large for reuse.
        Assert.True(tier.Reuses(MemoryTier.BytesOf(shape, ScalarType.Float32)));
        TensorLease lease;
        using (inference_mode())
            lease = tier.Allocate(shape, ScalarType.Float32, "a buffer leased while computing");
        lease.Tensor.fill_(1);
        lease.Dispose();
        using var reused = tier.Allocate(shape, ScalarType.Float32, "a buffer leased between blocks");
        Assert.Equal(MemoryTier.BytesOf(shape, ScalarType.Float32), tier.HostBuffers.ReusedBytes);
        Assert.Equal(0, reused.Tensor.sum().item<float>());
        reused.Tensor.fill_(2);
        tier.Trim();
    }

    [Fact]
    public void The_cpu_copy_engine_copies_into_a_tensor_made_in_inference_mode()
    {
        using var copies = new CpuCopyEngine();
        Tensor destination;
        using (inference_mode())
            destination = zeros(4, 3);
        using (destination)
        using (var source = ones(4, 3))
        {
            copies.CopyAsync(destination, source, CopyDirection.Store).Wait();
            Assert.Equal(12, destination.sum().item<float>());
        }
    }
}
