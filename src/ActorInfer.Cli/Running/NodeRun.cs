using System.Globalization;
using ActorInfer.Actors.Diagnostics;
using ActorInfer.Actors.Engine;
using ActorInfer.Actors.Memory;
using Tier = ActorInfer.Actors.Memory.Tier;
using ActorInfer.Actors.Node;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using ActorInfer.Model.Generation;
using ActorInfer.Planning;
using ActorInfer.Runtime.Tiers;

namespace ActorInfer.Cli.Running;

/// <summary>
/// One run of `generate` or `bench` through the in-process node: a pressure schedule, if given, is replayed into its
/// memory-pressure actor (as `/admin/pressure` commands arrive), and a run folder, if given, records the timeline.
/// What the actors decided is printed by <see cref="Summary"/>.
/// </summary>
public sealed class NodeRun : IDisposable
{
    private readonly Parts _parts;
    private readonly PressurePlayer? _player;
    private readonly RunRecorder? _recorder;

    /// <summary>What a run reports on besides the node: its engine, the engine's tiers and the budgets it started with.</summary>
    /// <param name="TierOf">The memory-pressure actor's tier for a schedule's "gpu" or "cpu".</param>
    public sealed record Parts(LocalNode Node, OffloadedEngine Engine, TierSet Tiers, Tier ComputeTier, TierBudgets StartBudgets,
        Func<string, Tier> TierOf);

    private NodeRun(Parts parts, PressurePlayer? player, RunRecorder? recorder)
    {
        _parts = parts;
        _player = player;
        _recorder = recorder;
    }

    public LocalNode Node => _parts.Node;

    /// <summary>Told of each step the node's engine finishes (0 = a block's prefill), on the tensor thread.</summary>
    public Action<int>? StepDone { get; set; }

    public static NodeRun Start(RunSetup setup, CompletionFactory factory, IReadOnlyList<PressureLine>? schedule, DirectoryInfo? runDir)
    {
        var node = setup.Node(factory);
        return Start(new Parts(node, setup.Offloaded!, setup.Tiers, setup.ComputeTier, setup.StartBudgets, setup.TierOf), schedule, runDir);
    }

    public static NodeRun Start(Parts parts, IReadOnlyList<PressureLine>? schedule, DirectoryInfo? runDir)
    {
        PressurePlayer? player = null;
        IReadOnlyList<PressureEvent>? events = null;
        var node = parts.Node;
        var planner = node.Parts.Planner;
        if (schedule is not null)
        {
            events = schedule.Select(l => new PressureEvent(l.Line, l.AtMs, l.AtStep, parts.TierOf(l.Tier), l.Budget)).ToArray();
            // A schedule that ends below what one sequence needs could never let the job finish: refused before anything runs.
            var final = PressurePlayer.Final(events, parts.StartBudgets);
            if (final[parts.ComputeTier] > 0 && planner.Plan(final) is null)
            {
                var needs = planner is FixedPolicyPlanner { Adapting: RuntimePlacementPlanner r }
                    ? $" (gpu {ByteSize.Format(r.Smallest.Device)}, cpu {ByteSize.Format(r.Smallest.Cpu)})" : "";
                throw new CliException($"--pressure: after the last event (line {schedule[^1].Line}) the budgets ({final}) are below what one " +
                    $"sequence needs{needs}: nothing could finish");
            }
        }
        var recorder = runDir is null ? null : new RunRecorder(runDir.FullName);
        if (events is not null)
        {
            // A step-timed change is in the scheduler's mailbox before the next step begins, as its step says.
            player = new PressurePlayer(events, e => node.SetBudget(e.Tier, e.Budget), () => node.Deliver(TimeSpan.FromSeconds(30)));
            node.PolicyPublished = p => player.OnPolicy(p.Policy, p.Budgets);
            if (recorder is not null)
                player.Applied = e => recorder.Event("pressure", $"{(e.Tier == parts.ComputeTier ? "gpu" : "cpu")} {ByteSize.Format(e.Budget)}");
        }
        var run = new NodeRun(parts, player, recorder);
        run.Hook();
        if (player is not null)
        {
            // The static compilation: every candidate placement's footprint and score, so that planning at run time is a lookup.
            var watch = System.Diagnostics.Stopwatch.StartNew();
            if (planner is FixedPolicyPlanner { Adapting: RuntimePlacementPlanner adapting })
            {
                adapting.Compiled.Wait();
                Console.Error.WriteLine($"pressure: the planner's placements were compiled ({adapting.Placements} candidates); " +
                    $"waited {watch.Elapsed.TotalMilliseconds:F0} ms for them");
            }
            player.Start();
        }
        return run;
    }

    private void Hook()
    {
        var engine = _parts.Engine;
        if (_recorder is { } recorder)
            TensorThreadClock.Slow = (what, ms) => recorder.Event("slow", string.Create(CultureInfo.InvariantCulture, $"{what} {ms:F0} ms"));
        var drops = 0;
        Policy? lastPolicy = null;
        engine.StepDone = step =>
        {
            StepDone?.Invoke(step);
            _player?.OnStep(step);
            if (_recorder is not { } rec) return;
            // The policy the runtime runs (placement and geometry), recorded when it changes.
            if (!ReferenceEquals(engine.Runtime.Policy, lastPolicy))
            {
                lastPolicy = engine.Runtime.Policy;
                rec.Event("policy", lastPolicy.ToString());
            }
            foreach (var d in Node.Drops.Skip(drops)) rec.Event("drop", $"{d.Batches} GPU batches, {d.Sequences} sequences");
            drops = Node.Drops.Count;
            var tiers = _parts.Tiers;
            rec.Sample(_player?.Budget(_parts.ComputeTier) ?? tiers.Device.BudgetBytes, _player?.Budget(Tier.Cpu) ?? tiers.Cpu.BudgetBytes,
                tiers.Device.BytesHeld, tiers.Cpu.BytesHeld, engine.RunningSequences, engine.TokensGenerated);
        };
    }

    /// <summary>Runs the requests to the end; <paramref name="finished"/> hears each block's results as they come.</summary>
    public IReadOnlyList<string> Run(IReadOnlyList<SchedulerProtocol.WorkItem> items, Action<IReadOnlyList<SchedulerProtocol.FinishedItem>>? finished = null) =>
        Node.Run(items, TimeSpan.FromDays(1), finished);

    /// <summary>Events sent and honoured, the policies the planner published and the drops, the time to honour each change.</summary>
    public string Summary()
    {
        var node = Node;
        // Budget changes sent during the job may still be on their way through the actors: each is honoured (and its
        // record kept) before it is counted. A change still on its way may send the schedule's next one.
        int sent;
        do
        {
            sent = _player?.Sent ?? 0;
            node.Settle(TimeSpan.FromSeconds(30));
        } while ((_player?.Sent ?? 0) != sent);
        // The budget changes' honours (the planner's own re-plans for a new workload say no planning time and are not changes).
        var honoured = node.Honoured.Where(h => h.Planning is not null).ToArray();
        var times = honoured.Select(h => h.Elapsed.TotalMilliseconds).Order().ToArray();
        var drops = node.Drops.ToArray();
        var median = times.Length == 0 ? 0 : times[times.Length / 2];
        var max = times.Length == 0 ? 0 : times[^1];
        static string Ms(TimeSpan t) => t.TotalMilliseconds.ToString("F1", CultureInfo.InvariantCulture);
        return $"pressure: {_player?.Sent ?? 0} events sent, {times.Length} honoured (median {median:F1} ms, max {max:F1} ms to honour); " +
               $"{drops.Sum(d => d.Batches)} GPU batches dropped, {drops.Sum(d => d.Sequences)} sequences requeued; " +
               $"{node.OutOfMemory.Count} device out-of-memory events; {_parts.Tiers.Device.BudgetsSetBelowHeld} budgets applied while the device held more; " +
               $"weights moved {ByteSize.Format(_parts.Engine.WeightBytesMoved)}; {_parts.Engine.Changes.Yields} decoding layers stopped for a change on its way\n" +
               $"pressure: policies published in order: {string.Join(" | ", node.Policies.Select(p => p.Policy?.ToString() ?? "none"))}\n" +
               $"pressure: drops in order (block: GPU batches): {string.Join(" ", drops.Select(d => $"{d.Block}:{d.Batches}"))}\n" +
               $"pressure: blocks in order (block@decoding steps before it): {string.Join(" ", node.Blocks.Select(b => $"{b.Block}@{b.AfterDecodingSteps}"))}\n" +
               $"pressure: honour times in order (ms): {string.Join(" ", honoured.Select(h => Ms(h.Elapsed)))}\n" +
               $"pressure: within the new budget at the change (a budget that did not fall; honoured then), in order: " +
               $"{string.Join(" ", honoured.Select(h => h.WithinAtChange ? "yes" : "no"))}\n" +
               $"pressure: each take-up as arrival + to the boundary + applying (ms): " +
               $"{string.Join(" ", honoured.Select(h => $"{Ms(h.Arrival)}+{Ms(h.ToBoundary)}+{Ms(h.Applying)}"))}\n" +
               $"pressure: where the running block was at each arrival: {string.Join(" ", honoured.Select(h => h.ArrivedIn.Replace(' ', '-')))}\n" +
               $"pressure: of each arrival, the planner's search (ms): {string.Join(" ", honoured.Select(h => h.Planning is { } p ? Ms(p) : "-"))}\n" +
               $"pressure: garbage collections gen0/gen1/gen2 {GC.CollectionCount(0)}/{GC.CollectionCount(1)}/{GC.CollectionCount(2)}, " +
               $"paused {GC.GetTotalPauseDuration().TotalMilliseconds:F0} ms in all";
    }

    public void Dispose()
    {
        _parts.Engine.StepDone = null;
        _player?.Dispose();
        if (_recorder is not null) TensorThreadClock.Slow = null;
        _recorder?.Dispose();
    }
}
