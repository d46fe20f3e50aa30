using ByteSize = ActorInfer.Planning.ByteSize;
using System.Text.Json;
using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Control;
using ActorInfer.Actors.Memory;
using ActorInfer.Actors.Planner;
using ActorInfer.Actors.Scheduling;
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
            var budgets = await g.Node.Memory.Ask<MemoryProtocol.CurrentBudgets>(MemoryProtocol.GetBudgets.Instance, g.AskTimeout);
            var policy = await g.Node.Planner.Ask<PlannerProtocol.PolicyAnswer>(PlannerProtocol.GetPolicy.Instance, g.AskTimeout);
            var scheduler = await g.Node.Scheduler.Ask<SchedulerProtocol.SchedulerStatus>(SchedulerProtocol.GetStatus.Instance, g.AskTimeout);
            var queues = await g.Gateway.Ask<GatewayProtocol.Queues>(GatewayProtocol.GetQueues.Instance, g.AskTimeout);
            return TypedResults.Json(new
            {
                budgets = Budgets(budgets.Budgets),
                // What pressure on the compute tier is measured against: below largest_block_bytes blocks shrink.
                compute = new { tier = GatewayMetrics.TierName(g.Node.ComputeTier), largest_block_bytes = g.Node.LargestBlockBytes },
                // Bytes in use per tier are not reported by the runtime yet.
                bytes_in_use = (object?)null,
                policy = policy.Policy?.ToString(),
                queue = new { scheduler = scheduler.Queued, running_block = scheduler.RunningBlock, tenants = queues.QueuedByTenant },
            });
        }).WithMetadata(access);
    }

    private static object Budgets(TierBudgets b) => new { gpu = b.Gpu, cpu = b.Cpu, disk = b.Disk };

    /// <summary><c>{"tier": "gpu"|"cpu"|"disk", "budget": "8GiB" | 8589934592 | "clear"}</c>.</summary>
    private static async Task<IResult> Pressure(HttpContext http, GatewayContext g)
    {
        var body = await RequestBody.ReadAsync(http.Request, g.Http.MaxBodyBytes);
        JsonElement root;
        try
        {
            using var doc = JsonDocument.Parse(body);
            root = doc.RootElement.Clone();
        }
        catch (JsonException ex)
        {
            throw ApiError.BadRequest(null, $"the body is not valid JSON: {ex.Message}", "invalid_json");
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
        MemoryProtocol.ICommand command = budget.ValueKind switch
        {
            JsonValueKind.String when budget.GetString() == "clear" => new MemoryProtocol.ClearBudget(tier),
            JsonValueKind.String => ByteSize.TryParse(budget.GetString(), out var bytes, out var problem)
                ? new MemoryProtocol.SetBudget(tier, bytes)
                : throw ApiError.BadRequest("budget", $"budget: {problem}; give bytes, a size such as \"8GiB\", or \"clear\""),
            JsonValueKind.Number when budget.TryGetInt64(out var bytes) && bytes >= 0 => new MemoryProtocol.SetBudget(tier, bytes),
            _ => throw ApiError.BadRequest("budget", $"budget must be a non-negative number of bytes, a size such as \"8GiB\", or \"clear\" (got {budget.GetRawText()})"),
        };
        g.Metrics.PressureEvents.Inc();
        // Told and asked from here in this order: the memory actor handles the command before it answers.
        g.Node.Memory.Tell(command);
        var current = await g.Node.Memory.Ask<MemoryProtocol.CurrentBudgets>(MemoryProtocol.GetBudgets.Instance, g.AskTimeout);
        return TypedResults.Json(new { tier = GatewayMetrics.TierName(tier), command = command is MemoryProtocol.ClearBudget ? "clear" : "set", budgets = Budgets(current.Budgets) });
    }
}
