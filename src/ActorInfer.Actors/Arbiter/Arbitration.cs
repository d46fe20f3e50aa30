namespace ActorInfer.Actors.Arbiter;

/// <summary>One model's claim on the compute tier: what its queued and running requests need, and its bounds.</summary>
/// <param name="Demand">Bytes of the compute tier its queued and running requests need (weights included).</param>
/// <param name="Floor">Bytes it keeps whatever the others need; null: none.</param>
/// <param name="Ceiling">Bytes it never gets more than; null: no limit.</param>
/// <param name="Running">Whether a block of the model runs now: among equal priorities it goes first.</param>
public sealed record Claim(string Name, int Priority, long Demand, long? Floor = null, long? Ceiling = null, bool Running = false)
{
    public long Cap => Ceiling ?? long.MaxValue;
}

/// <summary>
/// How the GPU arbiter divides the compute tier's budget among the models of a node: a pure function of the budget and
/// the claims. First every model gets its floor (higher priority first, while bytes are left); then, from the highest
/// priority down, each gets what its demand asks (up to its ceiling); among equal priorities a model whose block runs
/// goes before one whose requests wait (a running block is not squeezed for a queue of the same rank), then
/// configuration order; what is left goes to the models below the highest
/// priority, evenly (up to their ceilings), so that lower-priority work runs on whatever the burst leaves; anything still
/// left goes evenly to whoever is below its ceiling. The shares never add up to more than the budget.
/// </summary>
public static class Arbitration
{
    public static IReadOnlyList<long> Divide(long budget, IReadOnlyList<Claim> claims)
    {
        var shares = new long[claims.Count];
        if (claims.Count == 0 || budget <= 0) return shares;
        // Higher priority first; among equal priorities a running block first, then configuration order.
        var order = Enumerable.Range(0, claims.Count).OrderByDescending(i => claims[i].Priority).ThenByDescending(i => claims[i].Running)
            .ThenBy(i => i).ToArray();
        var left = budget;
        foreach (var i in order)
            Give(i, Math.Min(claims[i].Floor ?? 0, claims[i].Cap));
        foreach (var i in order)
            Give(i, Math.Min(claims[i].Demand, claims[i].Cap) - shares[i]);
        var top = claims.Max(c => c.Priority);
        var below = order.Where(i => claims[i].Priority < top).ToArray();
        Spread(below.Length > 0 ? below : order);
        Spread(order);
        return shares;

        void Give(int i, long bytes)
        {
            var given = Math.Clamp(bytes, 0, left);
            shares[i] += given;
            left -= given;
        }

        // Evenly among the models below their ceilings, again and again while a ceiling leaves some over.
        void Spread(int[] among)
        {
            while (left > 0)
            {
                var open = among.Where(i => shares[i] < claims[i].Cap).ToArray();
                if (open.Length == 0) return;
                var each = Math.Max(1, left / open.Length);
                foreach (var i in open)
                {
                    if (left == 0) break;
                    Give(i, Math.Min(each, claims[i].Cap - shares[i]));
                }
            }
        }
    }
}
