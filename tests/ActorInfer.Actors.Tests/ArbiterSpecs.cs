using ActorInfer.Actors.Arbiter;
using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using Akka.Actor;
using Akka.TestKit.Xunit2;

namespace ActorInfer.Actors.Tests;

/// <summary>The GPU arbiter between two models' memory actors, and the planner actor's conservative block sizing.</summary>
public sealed class ArbiterSpecs() : TestKit(TestModels.ActorConfig)
{
    // 1000 bytes of weights and 100 per sequence, as PlannerSpecs' planner: a budget of 1000 + 100 n holds n sequences.
    private static readonly ResidentPolicyPlanner Resident = new(new ModelFootprint(1000, 60, 40), Tier.Gpu, maxGpuBatchSize: 4, maxGpuBatches: 3);
    private static long BytesFor(ArbiterProtocol.Demand d) => 1000 + 100L * Math.Max(1, d.Sequences);

    private IActorRef ModelMemory() => Sys.ActorOf(MemoryProtocol.Props(new MemoryProtocol.Settings(null, null, null, TimeSpan.FromHours(1), 0), null));

    private long Budget(IActorRef memory, Tier tier) =>
        memory.Ask<MemoryProtocol.CurrentBudgets>(MemoryProtocol.GetBudgets.Instance, TimeSpan.FromSeconds(5)).Result.Budgets[tier];

    [Fact]
    public async Task A_burst_of_the_higher_priority_model_takes_its_demand_from_the_lower_and_gives_it_back_after_the_release_time()
    {
        var device = Sys.ActorOf(MemoryProtocol.Props(new MemoryProtocol.Settings(0, 10_000, 50_000, TimeSpan.FromHours(1), 1), null));
        var (chatMemory, batchMemory) = (ModelMemory(), ModelMemory());
        var (chat, batch) = (CreateTestProbe(), CreateTestProbe());
        var arbiter = Sys.ActorOf(ArbiterProtocol.Props(new ArbiterProtocol.Settings(Tier.Cpu, TimeSpan.FromMilliseconds(20), 1, TimeSpan.FromMilliseconds(400)),
            device, [
                new ArbiterProtocol.Tenant("chat", 10, null, null, chatMemory, chat.Ref, BytesFor),
                new ArbiterProtocol.Tenant("batch", 0, null, null, batchMemory, batch.Ref, BytesFor),
            ]));
        // Idle: chat keeps its weights and one sequence (1100), batch has the rest; the other tiers reach both as they are.
        AwaitAssert(() =>
        {
            Assert.Equal(1100, Budget(chatMemory, Tier.Cpu));
            Assert.Equal(8900, Budget(batchMemory, Tier.Cpu));
            Assert.Equal(50_000, Budget(batchMemory, Tier.Disk));
        }, TimeSpan.FromSeconds(5));

        // Twenty requests queue for chat: it gets what 24 need (the ladder's next size), 3400, batch what is left.
        chat.ExpectMsg<SchedulerProtocol.Observe>();
        chat.Send(arbiter, new SchedulerProtocol.SchedulerStatus(20, null, null));
        AwaitAssert(() =>
        {
            Assert.Equal(3400, Budget(chatMemory, Tier.Cpu));
            Assert.Equal(6600, Budget(batchMemory, Tier.Cpu));
        }, TimeSpan.FromSeconds(5));
        // One more request changes nothing (21 counts as 24).
        chat.Send(arbiter, new SchedulerProtocol.SchedulerStatus(21, null, null));
        var unchanged = await arbiter.Ask<ArbiterProtocol.State>(ArbiterProtocol.GetState.Instance, TimeSpan.FromSeconds(5));
        Assert.Equal(3400, unchanged.Tenants[0].Share);

        // A block of 12 of them starts and 8 wait: still 3400. Its demand gone, chat's share holds for the release time.
        chat.Send(arbiter, new SchedulerProtocol.BlockStarted(1, new BlockPolicy(4, 3, "all on cpu"), 12, 3));
        chat.Send(arbiter, new SchedulerProtocol.SchedulerStatus(8, 1, null));
        chat.Send(arbiter, new SchedulerProtocol.BlockFinished(1, 12, 4));
        chat.Send(arbiter, new SchedulerProtocol.SchedulerStatus(0, null, null));
        var fell = System.Diagnostics.Stopwatch.StartNew();
        Assert.Equal(3400, Budget(chatMemory, Tier.Cpu));
        AwaitAssert(() =>
        {
            // The status poll keeps the arbiter dividing; the chat probe answers each as an idle scheduler.
            chat.Send(arbiter, new SchedulerProtocol.SchedulerStatus(0, null, null));
            Assert.Equal(1100, Budget(chatMemory, Tier.Cpu));
            Assert.Equal(8900, Budget(batchMemory, Tier.Cpu));
        }, TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(50));
        Assert.True(fell.Elapsed >= TimeSpan.FromMilliseconds(300), $"fell after {fell.Elapsed}");

        // Drops of batch's blocks are counted for it, none for chat.
        batch.Send(arbiter, new SchedulerProtocol.BlockStarted(7, new BlockPolicy(4, 3, "all on cpu"), 12, 3));
        batch.Send(arbiter, new SchedulerProtocol.BatchesDropped(7, 2, 8, 40));
        var state = await arbiter.Ask<ArbiterProtocol.State>(ArbiterProtocol.GetState.Instance, TimeSpan.FromSeconds(5));
        Assert.Equal((0L, 0L), (state.Tenants[0].Drops, state.Tenants[0].Requeues));
        Assert.Equal((2L, 8L, 40L), (state.Tenants[1].Drops, state.Tenants[1].Requeues, state.Tenants[1].RecomputedTokens));
    }

    /// <summary>
    /// A static model (the FlexGen-style baseline) follows the division while idle; once it has work its share is fixed:
    /// a burst of the higher-priority model gets only what is left beside it, and the static share stays when that burst
    /// is gone.
    /// </summary>
    [Fact]
    public async Task A_static_model_keeps_the_share_it_had_when_its_work_came_through_the_other_model_s_burst()
    {
        var device = Sys.ActorOf(MemoryProtocol.Props(new MemoryProtocol.Settings(0, 10_000, 50_000, TimeSpan.FromHours(1), 1), null));
        var (chatMemory, batchMemory) = (ModelMemory(), ModelMemory());
        var (chat, batch) = (CreateTestProbe(), CreateTestProbe());
        var arbiter = Sys.ActorOf(ArbiterProtocol.Props(new ArbiterProtocol.Settings(Tier.Cpu, TimeSpan.FromMilliseconds(20), 1, TimeSpan.FromMilliseconds(100)),
            device, [
                new ArbiterProtocol.Tenant("chat", 10, null, null, chatMemory, chat.Ref, BytesFor),
                new ArbiterProtocol.Tenant("batch", 0, null, null, batchMemory, batch.Ref, BytesFor, Static: true),
            ]));
        chat.ExpectMsg<SchedulerProtocol.Observe>();
        batch.ExpectMsg<SchedulerProtocol.Observe>();
        // Idle, the static model follows the division: a burst of chat before its work comes takes from it as usual.
        chat.Send(arbiter, new SchedulerProtocol.SchedulerStatus(20, null, null));
        AwaitAssert(() => Assert.Equal(6600, Budget(batchMemory, Tier.Cpu)), TimeSpan.FromSeconds(5));
        chat.Send(arbiter, new SchedulerProtocol.SchedulerStatus(0, null, null));
        AwaitAssert(() =>
        {
            chat.Send(arbiter, new SchedulerProtocol.SchedulerStatus(0, null, null));
            Assert.Equal(8900, Budget(batchMemory, Tier.Cpu));
        }, TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(50));
        var state = await arbiter.Ask<ArbiterProtocol.State>(ArbiterProtocol.GetState.Instance, TimeSpan.FromSeconds(5));
        Assert.Null(state.Tenants[1].FixedShare);

        // Its job queues with chat idle: the share it has then (8900) is fixed.
        batch.Send(arbiter, new SchedulerProtocol.SchedulerStatus(500, null, null));
        AwaitAssert(async () =>
        {
            var s = await arbiter.Ask<ArbiterProtocol.State>(ArbiterProtocol.GetState.Instance, TimeSpan.FromSeconds(5));
            Assert.Equal(8900L, s.Tenants[1].FixedShare);
        }, TimeSpan.FromSeconds(5));

        // Chat's burst of twenty gets only the 1100 left beside it; the static share does not move.
        chat.Send(arbiter, new SchedulerProtocol.SchedulerStatus(20, null, null));
        batch.Send(arbiter, new SchedulerProtocol.SchedulerStatus(500, null, null));
        await Task.Delay(200);
        Assert.Equal(1100, Budget(chatMemory, Tier.Cpu));
        Assert.Equal(8900, Budget(batchMemory, Tier.Cpu));
        // Nor does it move when the job is done and chat is idle again.
        batch.Send(arbiter, new SchedulerProtocol.SchedulerStatus(0, null, null));
        chat.Send(arbiter, new SchedulerProtocol.SchedulerStatus(0, null, null));
        await Task.Delay(200);
        Assert.Equal(8900, Budget(batchMemory, Tier.Cpu));
    }

    /// <summary>The bytes each model's tiers hold, as the test sets them.</summary>
    private sealed class HeldBytes(long chat, long batch)
    {
        public long Chat = chat;
        public long Batch = batch;
    }

    /// <summary>
    /// An arbiter over chat (priority 10) and batch (priority 0) on a device of 10,000 CPU bytes, each model holding what the
    /// test sets; returns once batch has its first share (8,900).
    /// </summary>
    private (IActorRef Arbiter, IActorRef ChatMemory, IActorRef BatchMemory, Akka.TestKit.TestProbe Chat, Akka.TestKit.TestProbe Batch, HeldBytes Held)
        TwoModelsHolding(long chatHeld, long batchHeld)
    {
        var held = new HeldBytes(chatHeld, batchHeld);
        var device = Sys.ActorOf(MemoryProtocol.Props(new MemoryProtocol.Settings(0, 10_000, 50_000, TimeSpan.FromHours(1), 1), null));
        var (chatMemory, batchMemory) = (ModelMemory(), ModelMemory());
        var (chat, batch) = (CreateTestProbe(), CreateTestProbe());
        var arbiter = Sys.ActorOf(ArbiterProtocol.Props(new ArbiterProtocol.Settings(Tier.Cpu, TimeSpan.FromHours(1), 1, TimeSpan.FromMilliseconds(100)),
            device, [
                new ArbiterProtocol.Tenant("chat", 10, null, null, chatMemory, chat.Ref, BytesFor) { Held = () => Interlocked.Read(ref held.Chat) },
                new ArbiterProtocol.Tenant("batch", 0, null, null, batchMemory, batch.Ref, BytesFor) { Held = () => Interlocked.Read(ref held.Batch) },
            ]));
        chat.ExpectMsg<SchedulerProtocol.Observe>();
        AwaitAssert(() => Assert.Equal(8900, Budget(batchMemory, Tier.Cpu)), TimeSpan.FromSeconds(5));
        return (arbiter, chatMemory, batchMemory, chat, batch, held);
    }

    /// <summary>
    /// A rise goes only into bytes the others no longer hold: when chat's burst takes from batch, batch's share falls at
    /// once but chat's rises only as batch's tiers give their bytes back (its scheduler honours the fall at a layer
    /// boundary), so that the two never hold more than the device between the fall and its honour.
    /// </summary>
    [Fact]
    public void A_burst_s_share_rises_only_as_the_other_model_gives_its_bytes_back()
    {
        var (arbiter, chatMemory, batchMemory, chat, batch, held) = TwoModelsHolding(1100, 8900);

        // Twenty requests queue for chat (24 on the ladder): batch falls to 6600 at once; chat stays at 1100 while batch
        // still holds 8900.
        chat.Send(arbiter, new SchedulerProtocol.SchedulerStatus(20, null, null));
        AwaitAssert(() => Assert.Equal(6600, Budget(batchMemory, Tier.Cpu)), TimeSpan.FromSeconds(5));
        Assert.Equal(1100, Budget(chatMemory, Tier.Cpu));

        // Batch gives back part (8000 held): chat rises to what is free, 2000, at the next division (a status).
        Interlocked.Exchange(ref held.Batch, 8000);
        chat.Send(arbiter, new SchedulerProtocol.SchedulerStatus(20, null, null));
        AwaitAssert(() => Assert.Equal(2000, Budget(chatMemory, Tier.Cpu)), TimeSpan.FromSeconds(5));

        // Batch honours the fall (6600 held) and says so: chat takes the rest of its demand, 3400, without a poll.
        Interlocked.Exchange(ref held.Batch, 6600);
        batch.Send(arbiter, new SchedulerProtocol.PolicyHonoured(TimeSpan.FromMilliseconds(1), Dropped: true));
        AwaitAssert(() => Assert.Equal(3400, Budget(chatMemory, Tier.Cpu)), TimeSpan.FromSeconds(5));
        Assert.Equal(6600, Budget(batchMemory, Tier.Cpu));
    }

    /// <summary>
    /// A rise the lower model was sent but has not applied still counts: its scheduler may move weights in up to it before
    /// it reads the later fall, so the higher model's burst waits until the lower one honours its latest share.
    /// </summary>
    [Fact]
    public void A_rise_not_yet_applied_by_the_lower_model_holds_back_the_higher_model_s_rise_until_it_honours()
    {
        var (arbiter, chatMemory, batchMemory, chat, batch, held) = TwoModelsHolding(1100, 8900);
        SchedulerProtocol.PolicyHonoured Honoured(long cpu) => new(TimeSpan.FromMilliseconds(1), false) { Budgets = new TierBudgets(0, cpu, 50_000) };

        // A burst: batch falls to 6600, honours it, and chat rises to 3400.
        chat.Send(arbiter, new SchedulerProtocol.SchedulerStatus(20, null, null));
        AwaitAssert(() => Assert.Equal(6600, Budget(batchMemory, Tier.Cpu)), TimeSpan.FromSeconds(5));
        Interlocked.Exchange(ref held.Batch, 6600);
        batch.Send(arbiter, Honoured(6600));
        AwaitAssert(() => Assert.Equal(3400, Budget(chatMemory, Tier.Cpu)), TimeSpan.FromSeconds(5));
        // Chat's own rise counts against batch until chat honours it.
        chat.Send(arbiter, Honoured(3400));

        // Chat goes idle: after the release time it falls to 1100 and batch is sent 8900, which it has not applied yet.
        Interlocked.Exchange(ref held.Chat, 1100);
        AwaitAssert(() =>
        {
            chat.Send(arbiter, new SchedulerProtocol.SchedulerStatus(0, null, null));
            Assert.Equal(8900, Budget(batchMemory, Tier.Cpu));
        }, TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(50));
        Assert.Equal(1100, Budget(chatMemory, Tier.Cpu));

        // The next burst: batch's share falls to 6600 again, and it still holds only 6600, but it may yet move weights in
        // up to 8900: chat stays at 1100. An honour of the older budgets (6600, before the rise) settles nothing.
        chat.Send(arbiter, new SchedulerProtocol.SchedulerStatus(20, null, null));
        AwaitAssert(() => Assert.Equal(6600, Budget(batchMemory, Tier.Cpu)), TimeSpan.FromSeconds(5));
        chat.Send(arbiter, new SchedulerProtocol.SchedulerStatus(20, null, null));
        Thread.Sleep(200);
        Assert.Equal(1100, Budget(chatMemory, Tier.Cpu));
        // Batch honours its latest share: chat takes its demand.
        batch.Send(arbiter, Honoured(6600));
        AwaitAssert(() => Assert.Equal(3400, Budget(chatMemory, Tier.Cpu)), TimeSpan.FromSeconds(5));
    }

    /// <summary>On a GPU node each model's CPU budget is the node's in proportion to its weights (their host copies live there).</summary>
    [Fact]
    public void On_a_gpu_node_the_cpu_budget_is_split_by_the_models_weights()
    {
        var device = Sys.ActorOf(MemoryProtocol.Props(new MemoryProtocol.Settings(10_000, 9_000, 50_000, TimeSpan.FromHours(1), 1), null));
        var (chatMemory, batchMemory) = (ModelMemory(), ModelMemory());
        var (chat, batch) = (CreateTestProbe(), CreateTestProbe());
        Sys.ActorOf(ArbiterProtocol.Props(new ArbiterProtocol.Settings(Tier.Gpu, TimeSpan.FromHours(1), 1, TimeSpan.FromMilliseconds(100)),
            device, [
                new ArbiterProtocol.Tenant("chat", 10, null, null, chatMemory, chat.Ref, BytesFor) { WeightBytes = 2_000 },
                new ArbiterProtocol.Tenant("batch", 0, null, null, batchMemory, batch.Ref, BytesFor) { WeightBytes = 7_000 },
            ]));
        AwaitAssert(() =>
        {
            Assert.Equal(2_000, Budget(chatMemory, Tier.Cpu));
            Assert.Equal(7_000, Budget(batchMemory, Tier.Cpu));
            Assert.Equal(50_000, Budget(batchMemory, Tier.Disk));
            Assert.Equal(10_000, Budget(chatMemory, Tier.Gpu) + Budget(batchMemory, Tier.Gpu));
        }, TimeSpan.FromSeconds(5));
        Assert.Equal([4_500L, 4_500L], GpuArbiterActor.SplitByWeights(9_000, [0, 0]));
    }

    /// <summary>A memory-pressure actor at a GPU budget of 2200, the resident planner under <paramref name="headroom"/> following it, and a subscriber to the planner.</summary>
    private (IActorRef Memory, IActorRef Planner, Akka.TestKit.TestProbe Subscriber) PlannerAt2200(PlannerProtocol.Headroom headroom)
    {
        var memory = Sys.ActorOf(MemoryProtocol.Props(new MemoryProtocol.Settings(2200, null, null, TimeSpan.FromHours(1), 1), null));
        var planner = Sys.ActorOf(PlannerProtocol.Props(Resident, memory, headroom));
        var subscriber = CreateTestProbe();
        planner.Tell(new PlannerProtocol.Subscribe(subscriber.Ref));
        return (memory, planner, subscriber);
    }

    [Fact]
    public void Under_conservative_sizing_new_blocks_leave_room_for_the_falls_seen_while_blocks_ran()
    {
        var (memory, planner, subscriber) = PlannerAt2200(new PlannerProtocol.Headroom(Tier.Gpu, 4));
        // Planned under conservative sizing: no policy of it restarts a running block.
        var full = new BlockPolicy(4, 3, "all on gpu") { KeepsRunningBlocks = true };
        subscriber.FishForMessage<PlannerProtocol.PolicyChanged>(m => m.Policy == full, TimeSpan.FromSeconds(5));

        // A block of 12 runs while the budget falls from 2200 to 1600 (27%) and comes back.
        BlockThroughAFall(planner, memory, subscriber, full, block: 1, sequences: 12, batches: 3);
        // One block, one fall: the next blocks are planned for 2200 less 27% (1600): one batch of 4 (all on the device,
        // so there are no weights to raise into the rest).
        var conservative = NextPolicyBut(subscriber, full);
        Assert.Equal(new BlockPolicy(4, 1, "all on gpu") { KeepsRunningBlocks = true }, conservative.Policy);

        // Four blocks without a fall: the history forgets it, and blocks are full again.
        for (var b = 2; b <= 5; b++)
        {
            planner.Tell(new SchedulerProtocol.BlockStarted(b, conservative.Policy!, 4, 1));
            planner.Tell(new SchedulerProtocol.BlockFinished(b, 4, 5));
        }
        subscriber.FishForMessage<PlannerProtocol.PolicyChanged>(m => m.Policy == full, TimeSpan.FromSeconds(5));
    }

    /// <summary>
    /// A lower-priority model of several with a memory floor, under conservative sizing: its firm parts are planned for the
    /// floor from the first block on (its share may fall that far at any burst), before any fall is in the history.
    /// </summary>
    [Fact]
    public void Under_conservative_sizing_a_floor_bounds_the_firm_parts_from_the_first_block()
    {
        var (memory, planner, subscriber) = PlannerAt2200(new PlannerProtocol.Headroom(Tier.Gpu, 4) { Floor = 1600 });
        // 1600 holds 6 sequences: one batch of 4 (all on the device, no weights to raise into the rest).
        var first = subscriber.FishForMessage<PlannerProtocol.PolicyChanged>(m => m.Budgets.Gpu == 2200 && m.Policy is not null, TimeSpan.FromSeconds(5));
        Assert.Equal(new BlockPolicy(4, 1, "all on gpu") { KeepsRunningBlocks = true }, first.Policy);
        // Without conservative sizing the floor changes nothing: the block is as large as 2200 allows.
        var plain = Sys.ActorOf(PlannerProtocol.Props(Resident, memory, new PlannerProtocol.Headroom(Tier.Gpu, 0) { Floor = 1600 }));
        plain.Tell(new PlannerProtocol.Subscribe(subscriber.Ref));
        subscriber.FishForMessage<PlannerProtocol.PolicyChanged>(m => m.Policy == new BlockPolicy(4, 3, "all on gpu"), TimeSpan.FromSeconds(5));
    }

    /// <summary>
    /// The node's one top-priority model under conservative sizing: its share falls once its own demand did, which leaves its
    /// running block whole. A fall whose answer still holds the running block is not pressure and leaves its next blocks
    /// full; a fall that no longer holds it is.
    /// </summary>
    [Fact]
    public void Under_conservative_sizing_the_sole_top_priority_model_counts_only_falls_below_its_running_block()
    {
        var (memory, planner, subscriber) = PlannerAt2200(new PlannerProtocol.Headroom(Tier.Gpu, 4) { SoleTopPriority = true });
        var full = new BlockPolicy(4, 3, "all on gpu") { KeepsRunningBlocks = true };
        subscriber.FishForMessage<PlannerProtocol.PolicyChanged>(m => m.Policy == full, TimeSpan.FromSeconds(5));

        // A block of 4 runs while the budget falls to 1600 (which holds 6) and comes back: not counted, nothing new at its end.
        BlockThroughAFall(planner, memory, subscriber, full, block: 1, sequences: 4, batches: 1);
        subscriber.ExpectNoMsg(TimeSpan.FromMilliseconds(300));

        // A block of 12 under the same fall: 1600 no longer holds it. Two blocks, one fall (the first block's was not one): the
        // next blocks are planned for 2200 less half the depth (1900, which holds 9): two batches of 4.
        BlockThroughAFall(planner, memory, subscriber, full, block: 2, sequences: 12, batches: 3);
        var conservative = NextPolicyBut(subscriber, full);
        Assert.Equal(new BlockPolicy(4, 2, "all on gpu") { KeepsRunningBlocks = true }, conservative.Policy);
    }

    /// <summary>A block of <paramref name="policy"/> starts, the budget falls to 1600 and returns (<see cref="FallAndReturn"/>), the block finishes.</summary>
    private static void BlockThroughAFall(IActorRef planner, IActorRef memory, Akka.TestKit.TestProbe subscriber, BlockPolicy policy, int block,
        int sequences, int batches)
    {
        planner.Tell(new SchedulerProtocol.BlockStarted(block, policy, sequences, batches));
        FallAndReturn(memory, subscriber);
        planner.Tell(new SchedulerProtocol.BlockFinished(block, sequences, 5));
    }

    /// <summary>The next policy published for the whole budget (2200) other than <paramref name="full"/>.</summary>
    private static PlannerProtocol.PolicyChanged NextPolicyBut(Akka.TestKit.TestProbe subscriber, BlockPolicy full) =>
        subscriber.FishForMessage<PlannerProtocol.PolicyChanged>(m => m.Budgets.Gpu == 2200 && m.Policy != full, TimeSpan.FromSeconds(5));

    /// <summary>The budget falls to 1600 and returns to 2200; each change reaches the planner (its policy is published) before the next step.</summary>
    private static void FallAndReturn(IActorRef memory, Akka.TestKit.TestProbe subscriber)
    {
        memory.Tell(new MemoryProtocol.SetBudget(Tier.Gpu, 1600));
        subscriber.FishForMessage<PlannerProtocol.PolicyChanged>(m => m.Budgets.Gpu == 1600, TimeSpan.FromSeconds(5));
        memory.Tell(new MemoryProtocol.ClearBudget(Tier.Gpu));
        subscriber.FishForMessage<PlannerProtocol.PolicyChanged>(m => m.Budgets.Gpu == 2200, TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void Without_a_history_the_planner_sizes_blocks_as_before()
    {
        var (memory, planner, subscriber) = PlannerAt2200(PlannerProtocol.Headroom.None);
        var full = new BlockPolicy(4, 3, "all on gpu");
        subscriber.FishForMessage<PlannerProtocol.PolicyChanged>(m => m.Policy == full, TimeSpan.FromSeconds(5));
        BlockThroughAFall(planner, memory, subscriber, full, block: 1, sequences: 12, batches: 3);
        // No headroom: nothing new is published at the block's end.
        subscriber.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
    }
}
