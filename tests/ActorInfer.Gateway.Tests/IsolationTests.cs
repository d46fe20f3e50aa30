using System.Net.Http.Headers;
using System.Text.Json;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace ActorInfer.Gateway.Tests;

/// <summary>Every mapped route needs a key except the health probes; tenants never see each other's jobs.</summary>
[Collection(GatewayCollection.Name)]
public sealed class IsolationTests(GatewayFixture node)
{
    private static readonly HashSet<string> Public = ["/healthz", "/readyz"];

    [Fact]
    public async Task Every_route_but_the_health_probes_needs_a_key()
    {
        var endpoints = node.App.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>().ToList();
        Assert.True(endpoints.Count >= 12, $"only {endpoints.Count} routes mapped");
        var seen = new List<string>();
        foreach (var endpoint in endpoints)
        {
            var pattern = endpoint.RoutePattern.RawText!;
            var path = "/" + string.Join("/", pattern.TrimStart('/').Split('/').Select(s => s.StartsWith('{') ? "job-x" : s));
            var methods = endpoint.Metadata.GetMetadata<Microsoft.AspNetCore.Routing.HttpMethodMetadata>()?.HttpMethods ?? ["GET"];
            foreach (var method in methods)
            {
                using var client = node.Client(null);
                foreach (var key in new string?[] { null, "sk-wrong" })
                {
                    using var request = new HttpRequestMessage(new HttpMethod(method), path) { Content = GatewayFixture.Json("{}") };
                    if (key is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
                    using var response = await client.SendAsync(request);
                    if (Public.Contains(pattern))
                        Assert.True((int)response.StatusCode == 200, $"{method} {pattern} is a health probe: {(int)response.StatusCode}");
                    else
                        Assert.True((int)response.StatusCode == 401, $"{method} {pattern} answered {(int)response.StatusCode} without a valid key");
                }
                seen.Add($"{method} {pattern}");
            }
        }
        foreach (var route in new[] { "POST /v1/completions", "GET /v1/models", "POST /v1/jobs", "GET /v1/jobs", "GET /v1/jobs/{id}",
                     "GET /v1/jobs/{id}/results", "DELETE /v1/jobs/{id}", "POST /admin/pressure", "GET /admin/state", "GET /metrics" })
            Assert.Contains(route, seen);
    }

    [Fact]
    public async Task A_tenant_cannot_read_cancel_or_list_another_tenants_jobs()
    {
        using var alice = node.Client(GatewayFixture.AliceKey);
        using var bob = node.Client(GatewayFixture.BobKey);
        var bobJob = await node.BobJob();
        var aliceJob = (await GatewayFixture.ReadJson(await alice.PostAsync("/v1/jobs", new StringContent("{\"prompt\": \"alice's\", \"max_tokens\": 2}"))))
            .GetProperty("id").GetString()!;

        foreach (var (client, foreign) in new[] { (alice, bobJob), (bob, aliceJob) })
        {
            Assert.Equal(404, (int)(await client.GetAsync($"/v1/jobs/{foreign}")).StatusCode);
            Assert.Equal(404, (int)(await client.GetAsync($"/v1/jobs/{foreign}/results")).StatusCode);
            Assert.Equal(404, (int)(await client.DeleteAsync($"/v1/jobs/{foreign}")).StatusCode);
            var listed = (await GatewayFixture.ReadJson(await client.GetAsync("/v1/jobs"))).GetProperty("data").EnumerateArray()
                .Select(j => j.GetProperty("id").GetString()).ToList();
            Assert.DoesNotContain(foreign, listed);
        }
        // The owner still sees both its job and the state it was left in (nobody cancelled it).
        var own = await GatewayFixture.ReadJson(await bob.GetAsync($"/v1/jobs/{bobJob}"));
        Assert.NotEqual("cancelled", own.GetProperty("state").GetString());
        Assert.Contains((await GatewayFixture.ReadJson(await alice.GetAsync("/v1/jobs"))).GetProperty("data").EnumerateArray(),
            j => j.GetProperty("id").GetString() == aliceJob);
    }

    [Fact]
    public async Task Keys_are_not_kept_in_the_settings_only_their_hashes()
    {
        var settings = node.Node.Settings.Http;
        var all = JsonSerializer.Serialize(settings);
        foreach (var key in new[] { GatewayFixture.AliceKey, GatewayFixture.BobKey, GatewayFixture.AdminKey })
            Assert.DoesNotContain(key, all);
        Assert.Contains(ActorInfer.Actors.Configuration.HttpSettings.HashKey(GatewayFixture.AliceKey), all);
        await Task.CompletedTask;
    }
}
