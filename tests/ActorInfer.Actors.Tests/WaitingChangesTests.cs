using ActorInfer.Actors.Scheduling;

namespace ActorInfer.Actors.Tests;

public sealed class WaitingChangesTests
{
    private readonly record struct First(int Value);

    private readonly record struct Second(int Value);

    // A generic method over a value type compiles anew for each type: its first call with a type compiles on this thread.
    private static string Fresh<T>(T value) where T : struct => value.ToString()!;

    private static string Apply<T>(T fresh) where T : struct
    {
        var clock = new WaitingChanges();
        clock.Arrived(null, arrivedIn: "decoding");
        clock.StartApplying();
        clock.Lap("fit and drop 1");
        _ = Fresh(fresh);
        clock.Lap("re-place until within");
        var honoured = Assert.Single(clock.Honour(dropped: true));
        return honoured.ApplyingParts;
    }

    /// <summary>
    /// What the thread compiled during an application is told with the part it happened in: a first call in the second
    /// part is counted there, not in the first; once the clock's own code is compiled, nothing else is counted.
    /// </summary>
    [Fact]
    public void Compiling_is_told_with_the_part_that_did_it()
    {
        _ = Apply(new First(1));
        var parts = Apply(new Second(2)).Split(", ");
        Assert.StartsWith("fit and drop 1 ", parts[0]);
        Assert.DoesNotContain("compiling", parts[0]);
        Assert.StartsWith("re-place until within ", parts[1]);
        Assert.Contains("(compiling ", parts[1]);
        Assert.DoesNotContain(parts.Skip(2), p => p.Contains("compiling"));
        // Compiled again with nothing new: no part compiles.
        Assert.DoesNotContain("compiling", Apply(new Second(3)));
    }
}
