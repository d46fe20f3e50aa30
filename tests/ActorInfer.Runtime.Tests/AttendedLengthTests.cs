using ActorInfer.Runtime.Schedule;
using TorchSharp;

namespace ActorInfer.Runtime.Tests;

/// <summary>
/// How many cache entries a decoding step attends on the device: batched products on CUDA read up to a multiple of 8 (the
/// rows of their products then stay 16-byte aligned), a fused kernel up to a multiple of 64, never past the capacity; on
/// the CPU the products read the filled entries.
/// </summary>
public sealed class AttendedLengthTests
{
    [Theory]
    [InlineData(513, 544, 520)]
    [InlineData(520, 544, 520)]
    [InlineData(1, 544, 8)]
    [InlineData(541, 543, 543)]  // within the capacity
    public void Batched_products_on_cuda_attend_up_to_a_multiple_of_8(int filled, int capacity, int attended) =>
        Assert.Equal(attended, LayerAttention.AlignedLength(filled, capacity, DeviceType.CUDA));

    [Theory]
    [InlineData(513, 544)]
    [InlineData(7, 16)]
    public void On_the_cpu_they_attend_the_filled_entries(int filled, int capacity) =>
        Assert.Equal(filled, LayerAttention.AlignedLength(filled, capacity, DeviceType.CPU));

    [Theory]
    [InlineData(513, 2048, 576)]
    [InlineData(513, 544, 544)]
    public void A_fused_kernel_attends_up_to_a_multiple_of_64(int filled, int capacity, int attended) =>
        Assert.Equal(attended, LayerAttention.RoundedLength(filled, capacity));
}
