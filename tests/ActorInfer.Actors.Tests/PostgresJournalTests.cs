using ActorInfer.Actors.Node;

namespace ActorInfer.Actors.Tests;

/// <summary>A node's claim on its PostgreSQL journal (needs the server scripts/test starts).</summary>
public sealed class PostgresJournalTests
{
    /// <summary>
    /// A claim given back is free at once: a node started again right after it stopped (a restart, a spec's next actor
    /// system) takes it. The session's close alone freed it only once the server had ended the session, and a spec that
    /// claimed again at once found its own old claim held (a CI failure: "in use by actorinfer node (pid ...)").
    /// </summary>
    [Fact]
    public void A_claim_given_back_is_taken_again_at_once_and_a_held_one_is_refused_naming_the_holder()
    {
        using var journal = TestJournal.PostgreSql();
        for (var i = 0; i < 50; i++)
            using (PostgresJournal.Claim(journal.Settings)) { }
        using var held = PostgresJournal.Claim(journal.Settings);
        var refused = Assert.Throws<JournalClaimedException>(() => PostgresJournal.Claim(journal.Settings));
        Assert.Contains($"in use by actorinfer node (pid {Environment.ProcessId} on ", refused.Message);
    }
}
