using ByteSize = ActorInfer.Planning.ByteSize;
using System.Text.Json;
using ActorInfer.Actors.Routing;
using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Control;
using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
using ActorInfer.Actors.Tiers;
using ActorInfer.Model.Generation;
using Akka.Actor;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace ActorInfer.Gateway;

/// <summary>
/// Operator routes (admin key): <c>POST /admin/pressure</c> sets or clears a tier's budget exactly as
/// `actorinfer pressure` does (handed to the memory-pressure actor); <c>GET /admin/state</c> shows budgets,
/// the compute tier and the budget its largest block needs, the current policy and queue lengths.
/// </summary>
public static class AdminRoutes
{
    public static void Map(IEndpointRouteBuilder app, GatewayContext g)
    {
        var access = new RouteAccess(Access.Admin);
        app.MapPost("/admin/pressure", (Func<HttpContext, Task<IResult>>)(http => Pressure(http, g))).WithMetadata(access);
        app.MapGet("/admin/state", async () =>
        {
            if (g.Node.Dispatcher is { } dispatcher) return await ClusterState(g, dispatcher);
            var budgets = await g.Node.Memory.Ask<MemoryProtocol.CurrentBudgets>(MemoryProtocol.GetBudgets.Instance, g.AskTimeout);
            var policy = await g.Node.Planner.Ask<PlannerProtocol.PolicyAnswer>(PlannerProtocol.GetPolicy.Instance, g.AskTimeout);
            var scheduler = await g.Node.Scheduler.Ask<SchedulerProtocol.SchedulerStatus>(SchedulerProtocol.GetStatus.Instance, g.AskTimeout);
            var queues = await g.Gateway.Ask<GatewayProtocol.Queues>(GatewayProtocol.GetQueues.Instance, g.AskTimeout);
            var tiers = await Task.WhenAll(g.Node.TierActors.Select(t => t.Ask<TierProtocol.TierState>(TierProtocol.GetState.Instance, g.AskTimeout)));
            var last = g.Metrics.LastBlock;
            return TypedResults.Json(new
            {
                budgets = Budgets(budgets.Budgets),
                // What pressure on the compute tier is measured against: below largest_block_bytes blocks shrink.
                compute = new { tier = GatewayMetrics.TierName(g.Node.ComputeTier), largest_block_bytes = g.Node.LargestBlockBytes },
                // What each offload-tier actor accounts its tier as holding now.
                bytes_in_use = tiers.ToDictionary(t => GatewayMetrics.TierName(t.Tier), t => t.BytesHeld),
                // The GPU as the device reports it (every process on it, the CUDA context and the caching allocator's reserve
                // included); null on a node without CUDA.
                device = DeviceMemory(g),
                policy = policy.Policy?.ToString(),
                // Whether a sequence's tokens depend on its own request alone (actorinfer.batch-invariant).
                batch_invariant = g.Node.Settings.BatchInvariant,
                planner = new
                {
                    hardware = g.Node.PolicyPlanner is { } planner ? new { name = planner.Hardware.Name, source = planner.HardwareSource } : null,
                    workload = policy.Policy?.Bucket is { } bucket ? new { prompt_length = bucket.PromptLength, generation_length = bucket.GenerationLength } : null,
                    block_size = policy.Policy?.BlockSize,
                    predicted_tokens_per_second = policy.Policy?.PredictedTokensPerSecond,
                    last_block = last is null ? null : new
                    {
                        id = last.Block, sequences = last.Sequences, tokens = last.Tokens, seconds = last.Seconds,
                        measured_tokens_per_second = last.Seconds > 0 ? last.Tokens / last.Seconds : 0,
                        predicted_tokens_per_second = last.PredictedTokensPerSecond, policy = last.Policy?.ToString(),
                    },
                },
                queue = new { scheduler = scheduler.Queued, running_block = scheduler.RunningBlock, decoding_steps = scheduler.DecodingSteps, tenants = queues.QueuedByTenant },
                // Each served model (one on a node alone); on a node of several, the GPU arbiter's shares.
                models = await ModelStates.Read(g),
                arbiter = await ModelStates.Arbiter(g),
            });
        }).WithMetadata(access);
    }

    private static object? DeviceMemory(GatewayContext g)
    {
        if (!g.Node.Settings.IsCuda) return null;
        var (free, total) = ActorInfer.Runtime.Tiers.MachineMemory.Device();
        return new { total_bytes = total, used_bytes = total - free };
    }

    /// <summary>A gateway without the worker role: its workers (address, device, slots, requests held, results completed) and queue.</summary>
    private static async Task<IResult> ClusterState(GatewayContext g, IActorRef dispatcher)
    {
        var workers = await dispatcher.Ask<WorkerProtocol.WorkerList>(WorkerProtocol.GetWorkers.Instance, g.AskTimeout);
        var queues = await g.Gateway.Ask<GatewayProtocol.Queues>(GatewayProtocol.GetQueues.Instance, g.AskTimeout);
        return TypedResults.Json(new
        {
            roles = g.Node.Settings.Roles.Names,
            workers = workers.Workers.Select(w => new { address = w.Address, up = w.Up, device = w.Device, slots = w.Slots, assigned = w.Assigned, completed = w.Completed }),
            workers_up = workers.Workers.Count(w => w.Up),
            redispatched = workers.Redispatched,
            queue = new { pending = workers.Pending, tenants = queues.QueuedByTenant },
        });
    }

    private static object Budgets(TierBudgets b) => new { gpu = b.Gpu, cpu = b.Cpu, disk = b.Disk };

    /// <summary><c>{"tier": "gpu"|"cpu"|"disk", "budget": "8GiB" | 8589934592 | "clear"}</c>.</summary>
    public static MemoryProtocol.ICommand ParsePressure(byte[] body)
    {
        JsonElement root;
        try
        {
            using var doc = StrictJson.Parse(body);
            root = doc.RootElement.Clone();
        }
        catch (RequestValidationException ex)
        {
            throw ApiError.BadRequest(ex.Param, ex.Message, string.IsNullOrEmpty(ex.Param) ? "invalid_json" : null);
        }
        if (root.ValueKind != JsonValueKind.Object) throw ApiError.BadRequest(null, "the body must be a JSON object");
        foreach (var p in root.EnumerateObject())
            if (p.Name is not ("tier" or "budget")) throw ApiError.BadRequest(p.Name, $"unknown field '{p.Name}'");
        if (!root.TryGetProperty("tier", out var tierElement) || tierElement.ValueKind != JsonValueKind.String)
            throw ApiError.BadRequest("tier", "tier is required: \"gpu\", \"cpu\" or \"disk\"");
        Tier tier;
        try
        {
            tier = ControlProtocol.ParseTier(tierElement.GetString()!);
        }
        catch (FormatException ex)
        {
            throw ApiError.BadRequest("tier", ex.Message);
        }
        if (!root.TryGetProperty("budget", out var budget)) throw ApiError.BadRequest("budget", "budget is required: bytes, a size such as \"8GiB\", or \"clear\"");
        return budget.ValueKind switch
        {
            JsonValueKind.String when budget.GetString() == "clear" => new MemoryProtocol.ClearBudget(tier),
            JsonValueKind.String => ByteSize.TryParse(budget.GetString(), out var bytes, out var problem)
                ? new MemoryProtocol.SetBudget(tier, bytes)
                : throw ApiError.BadRequest("budget", $"budget: {problem}; give bytes, a size such as \"8GiB\", or \"clear\""),
            JsonValueKind.Number when budget.TryGetInt64(out var bytes) && bytes >= 0 => new MemoryProtocol.SetBudget(tier, bytes),
            _ => throw ApiError.BadRequest("budget", $"budget must be a non-negative number of bytes, a size such as \"8GiB\", or \"clear\" (got {budget.GetRawText()})"),
        };
    }

    private static async Task<IResult> Pressure(HttpContext http, GatewayContext g)
    {
        var command = ParsePressure(await RequestBody.ReadAsync(http.Request, g.Http.MaxBodyBytes));
        if (!g.Node.HasModel)
            throw new ApiError(StatusCodes.Status409Conflict, "invalid_request_error", null, "no_model",
                "this node is a gateway without the worker role: it holds no memory budgets; send pressure to a worker's node");
        var tier = command switch
        {
            MemoryProtocol.SetBudget set => set.Tier,
            MemoryProtocol.ClearBudget clear => clear.Tier,
            _ => throw new InvalidOperationException($"unexpected command {command}"),
        };
        g.Metrics.PressureEvents.Inc();
        // Told and asked from here in this order: the memory actor handles the command before it answers.
        g.Node.Memory.Tell(command);
        var current = await g.Node.Memory.Ask<MemoryProtocol.CurrentBudgets>(MemoryProtocol.GetBudgets.Instance, g.AskTimeout);
        return TypedResults.Json(new { tier = GatewayMetrics.TierName(tier), command = command is MemoryProtocol.ClearBudget ? "clear" : "set", budgets = Budgets(current.Budgets) });
    }
}
