using System.Collections.Concurrent;
using System.Text.Json;
using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Jobs;
using Akka.Actor;

namespace ActorInfer.Gateway.Tests;

/// <summary>
/// Priorities within limits: a tenant's <c>?priority=N</c> is capped to its <c>max-priority</c> (its own priority is
/// always allowed); only an admin key sets any priority. A capped job does not overtake a tenant of higher priority.
/// </summary>
public sealed class PriorityCapTests
{
    private const string HighKey = "sk-high-priority";
    private const string LowKey = "sk-low-priority";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    /// <summary>Records the order in which the job store reports jobs completed.</summary>
    private sealed class CompletionOrder : ReceiveActor
    {
        public CompletionOrder(ConcurrentQueue<string> order) => Receive<JobProtocol.JobCompleted>(m => order.Enqueue(m.JobId));
    }

    private static async Task<(string Id, int Priority)> Submit(HttpClient client, string query, IEnumerable<string> lines)
    {
        using var response = await client.PostAsync("/v1/jobs" + query, new StringContent(string.Join("\n", lines)));
        var job = await GatewayFixture.ReadJson(response);
        Assert.Equal(200, (int)response.StatusCode);
        return (job.GetProperty("id").GetString()!, job.GetProperty("priority").GetInt32());
    }

    [Fact]
    public async Task A_tenant_asking_above_its_maximum_is_capped_and_does_not_overtake_a_tenant_of_higher_priority()
    {
        var dir = GatewayFixture.TempDir();
        var config = Path.Combine(dir, "node.conf");
        // No memory at first, so both jobs wait until the budget is raised; blocks of at most 2 x 8 sequences.
        File.WriteAllText(config, $$"""
            actorinfer {
              model = "models/opt-tiny"
              memory { cpu-budget = 0, telemetry-interval = 1h }
              scheduler { max-gpu-batch-size = 8, max-gpu-batches = 2 }
              http.tenants {
                high { api-key-hashes = ["{{HttpSettings.HashKey(HighKey)}}"], priority = 5 }
                low { api-key-hashes = ["{{HttpSettings.HashKey(LowKey)}}"], priority = 0, max-priority = 2 }
              }
            }
            """);
        await using var node = await StartedNode.Start(config, Path.Combine(dir, "data"));
        var order = new ConcurrentQueue<string>();
        node.Node.Jobs.Tell(new JobProtocol.Observe(node.Node.System.ActorOf(Props.Create(() => new CompletionOrder(order)))));
        using var high = node.Client(HighKey);
        using var low = node.Client(LowKey);
        using var admin = node.Client();

        // The low tenant asks first, and for far more than anyone's priority: it gets its maximum, 2.
        var lowJob = await Submit(low, "?priority=2147483647", [JobTests.JobLines(1)[0]]);
        Assert.Equal(2, lowJob.Priority);
        Assert.Equal(1, (await Submit(low, "?priority=1", [JobTests.JobLines(1)[0]])).Priority);
        // A whole block's worth of the high tenant's work, at its own priority.
        var highJob = await Submit(high, "", JobTests.JobLines(16));
        Assert.Equal(5, highJob.Priority);
        // The high tenant may always ask for its own priority; an admin key (here also the default tenant's) for any.
        Assert.Equal(5, (await Submit(high, "?priority=9", [JobTests.JobLines(1)[0]])).Priority);
        Assert.Equal(1000, (await Submit(admin, "?priority=1000", [JobTests.JobLines(1)[0]])).Priority);

        using (var raised = await admin.PostAsync("/admin/pressure", GatewayFixture.Json("""{"tier": "cpu", "budget": "4GiB"}""")))
            Assert.Equal(200, (int)raised.StatusCode);
        await GatewayFixture.Poll(async () => await GatewayFixture.ReadJson(await low.GetAsync($"/v1/jobs/{lowJob.Id}")),
            s => s.GetProperty("state").GetString() == "completed", Timeout);
        // The job store tells the observer as it completes a job; the observer's mailbox may still hold it when the
        // route already answers "completed".
        var deadline = DateTime.UtcNow + Timeout;
        while (!order.Contains(lowJob.Id) && DateTime.UtcNow < deadline) await Task.Delay(20);
        var completed = order.ToList();
        Assert.True(completed.IndexOf(highJob.Id) >= 0 && completed.IndexOf(highJob.Id) < completed.IndexOf(lowJob.Id),
            $"completion order: {string.Join(", ", completed)}; high {highJob.Id}, low {lowJob.Id}");
    }
}
