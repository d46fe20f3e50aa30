using ActorInfer.Actors.Diagnostics;

namespace ActorInfer.Actors.Tests;

public sealed class BudgetFallWarmupTests
{
    /// <summary>
    /// The rehearsal walks the whole answer to a fall on its miniature (a drop at a layer boundary, weights off the
    /// device and back, a layer stopped for the next change, the step finished with the batch left): it runs through,
    /// and its weights did move both ways.
    /// </summary>
    [Fact]
    public void The_rehearsal_drops_a_batch_moves_weights_off_the_device_and_back_and_stops_a_layer()
    {
        var (dropped, moved, yields) = BudgetFallWarmup.Run();
        Assert.Equal(1, dropped);
        Assert.Equal(1, yields);
        // Half of the weights left for the host copies they kept (nothing copied) and came back (copied).
        Assert.True(moved > 0, "the rehearsal copied no weights back");
        Assert.Equal((dropped, moved, yields), BudgetFallWarmup.Run());
    }
}
