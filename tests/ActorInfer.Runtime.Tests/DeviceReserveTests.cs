using ActorInfer.Runtime.Cuda;
using ActorInfer.Runtime.Tiers;

namespace ActorInfer.Runtime.Tests;

public sealed class DeviceReserveTests
{
    [Fact]
    public void TheUsableBudgetLeavesTheContextAndTwoPercentOutsideTheAllocator()
    {
        const long gib = 1L << 30;
        var reserve = DeviceReserve.For(40 * gib, contextBytes: 600L << 20);
        Assert.Equal(40 * gib * 2 / 100, reserve.AllocatorAllowanceBytes);
        Assert.Equal(40 * gib - (600L << 20) - 40 * gib * 2 / 100, reserve.Usable(40 * gib));
    }

    [Fact]
    public void ASmallBudgetStillKeepsTheMinimumAllowance()
    {
        var reserve = DeviceReserve.For(1L << 30, contextBytes: 0);
        Assert.Equal(512L << 20, reserve.AllocatorAllowanceBytes);
        Assert.Equal((1L << 30) - (512L << 20), reserve.Usable(1L << 30));
    }

    [Fact]
    public void ABudgetBelowTheReserveIsRefusedNamingTheDeviceAndTheBytes()
    {
        var reserve = DeviceReserve.For(768L << 20, contextBytes: 400L << 20);
        var e = Assert.Throws<TierBudgetExceededException>(() => reserve.Usable(768L << 20));
        Assert.Equal(TierKind.Device, e.Tier);
        Assert.Equal(768L << 20, e.BytesAllowed);
        Assert.Equal((400L << 20) + (512L << 20), e.BytesNeeded);
        Assert.Contains("CUDA context", e.Message);
    }

    [Fact]
    public void ABudgetForUsableBytesLeavesThemUsableBesideTheContextAndTheAllowance()
    {
        foreach (var usable in new[] { 1L << 20, 3L << 30, 40L << 30 })
        {
            const long context = 600L << 20;
            var budget = DeviceReserve.BudgetFor(usable, context);
            Assert.InRange(DeviceReserve.For(budget, context).Usable(budget), usable, usable + 1);
            Assert.True(DeviceReserve.For(budget - 1, context).Usable(budget - 1) < usable, $"{budget - 1} holds {usable} too");
        }
    }

    [Fact]
    public void NoReserveOnTheCpuLeavesTheBudgetWhole()
    {
        Assert.Equal(0, DeviceReserve.None.Bytes);
        Assert.Equal(12345, DeviceReserve.None.Usable(12345));
    }

    [Fact]
    public void TheAllocatorConfigurationInEffectIsInTheEnvironment()
    {
        var applied = AllocatorSettings.Apply();
        Assert.False(string.IsNullOrEmpty(applied));
        Assert.Equal(applied, Environment.GetEnvironmentVariable(AllocatorSettings.Variable));
    }
}
