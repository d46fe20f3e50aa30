using System.Globalization;
using ActorInfer.Runtime.Cuda;
using Xunit;

namespace ActorInfer.Runtime.Tests;

/// <summary>The cap on libtorch's caching allocator that keeps a GPU budget as the device reports it.</summary>
public sealed class AllocatorCapTests
{
    private const long Gib = 1L << 30;

    [Fact]
    public void The_cap_is_the_budget_less_the_context_and_what_lies_outside_the_allocator()
    {
        var cap = AllocatorSettings.CapFor(12 * Gib, contextBytes: 520L << 20, totalBytes: 80 * Gib);
        Assert.Equal(12 * Gib - (520L << 20) - AllocatorSettings.OutsideAllocatorBytes, cap);
    }

    [Theory]
    [InlineData(80L << 30)]  // the whole device: the allocator needs no cap
    [InlineData(90L << 30)]  // more than the device
    [InlineData(600L << 20)] // nothing left beside the context: the budget is refused elsewhere
    public void No_cap_where_the_budget_leaves_the_whole_device_or_nothing(long budget)
    {
        Assert.Null(AllocatorSettings.CapFor(budget, contextBytes: 520L << 20, totalBytes: 80 * Gib));
    }

    [Fact]
    public void The_fraction_is_added_to_the_settings_in_force()
    {
        Assert.Equal("expandable_segments:True,per_process_memory_fraction:0.143730",
            AllocatorSettings.WithFraction("expandable_segments:True", 0.14373));
        Assert.Equal("per_process_memory_fraction:0.500000", AllocatorSettings.WithFraction(null, 0.5));
        Assert.Equal("expandable_segments:False,per_process_memory_fraction:0.250000",
            AllocatorSettings.WithFraction("expandable_segments:False,", 0.25));
    }

    [Fact]
    public void A_fraction_the_user_set_is_kept()
    {
        const string own = "expandable_segments:True,per_process_memory_fraction:0.9";
        Assert.Equal(own, AllocatorSettings.WithFraction(own, 0.2));
    }

    [Fact]
    public void The_fraction_is_rounded_down_so_that_the_cap_never_grows()
    {
        var total = 85017493504L;
        var cap = 12 * Gib - (650L << 20) - AllocatorSettings.OutsideAllocatorBytes;
        var setting = AllocatorSettings.WithFraction(null, (double)cap / total);
        var fraction = double.Parse(setting[(setting.IndexOf(':') + 1)..], CultureInfo.InvariantCulture);
        Assert.True(fraction * total <= cap, $"{fraction} of {total} is {fraction * total}, past the cap {cap}");
        Assert.True(cap - fraction * total < total * 1e-6 + 1);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-0.1)]
    [InlineData(1.5)]
    [InlineData(double.NaN)]
    public void A_fraction_outside_the_device_is_refused(double fraction)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => AllocatorSettings.WithFraction("expandable_segments:True", fraction));
    }
}
