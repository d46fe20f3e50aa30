using ActorInfer.Actors.Scheduling;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;

namespace ActorInfer.Actors.Tests;

public class LayerStepsTests
{
    private static PolicyHonoured Honoured(double arrivalMs, double toBoundaryMs) =>
        new(TimeSpan.FromMilliseconds(arrivalMs + toBoundaryMs + 0.5), Dropped: false)
        {
            TakeUp = TimeSpan.FromMilliseconds(arrivalMs + toBoundaryMs + 0.5),
            Arrival = TimeSpan.FromMilliseconds(arrivalMs),
            Planning = TimeSpan.FromMilliseconds(0.2),
            ToBoundary = TimeSpan.FromMilliseconds(toBoundaryMs),
            Applying = TimeSpan.FromMilliseconds(0.5),
            ArrivedIn = "prefill",
            BehindOnArrival = "layer compute (prefill) 3649.4 ms (longest of 2)",
            BehindToBoundary = "layer compute (prefill) 524.9 ms (longest of 1)",
        };

    /// <summary>
    /// A change held on its way to the scheduler, or on the way to a boundary, names what its model's tensor thread ran
    /// meanwhile; one that came at once names nothing.
    /// </summary>
    [Fact]
    public void An_honour_line_names_what_held_the_change_and_only_where_something_did()
    {
        var steps = new LayerSteps();
        var held = steps.HonourLine(Honoured(3650, 525));
        Assert.StartsWith("budget change honoured in 4175.50 ms: planning 0.20, to the scheduler 3649.80, to a boundary 525.00, applying 0.50 ms; arrived in prefill; ", held);
        Assert.EndsWith("; on the way, the tensor thread ran layer compute (prefill) 3649.4 ms (longest of 2); to the boundary, layer compute (prefill) 524.9 ms (longest of 1)", held);

        var quick = steps.HonourLine(Honoured(0.5, 0.1));
        Assert.DoesNotContain("tensor thread ran", quick);
        Assert.DoesNotContain("to the boundary,", quick);
        Assert.EndsWith("no prefill layer step measured yet, no decoding layer step measured yet", quick);
    }
}
