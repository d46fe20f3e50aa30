using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text.RegularExpressions;
using ActorInfer.Actors.Configuration;
using ActorInfer.Actors.Node;
using ActorInfer.Cli;
using ActorInfer.Cli.Commands;

namespace ActorInfer.Gateway.Tests;

/// <summary>`actorinfer node` as a real process with hocon/single-node.conf and the HTTP flags; the http keys are validated.</summary>
public sealed partial class NodeCommandTests
{
    [GeneratedRegex(@"http: listening on (http://\S+)")]
    private static partial Regex Listening();

    [Fact]
    public async Task The_single_node_config_with_port_and_api_key_flags_serves_completions()
    {
        var data = GatewayFixture.TempDir();
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = GatewayFixture.RepositoryRoot,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "actorinfer.dll"), "node", "--config", "hocon/single-node.conf",
                     "--data-dir", data, "--port", "0", "--api-key", "sk-flag" })
            start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var lines = new BlockingCollection<string>();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lines.Add(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lines.Add("stderr: " + e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            string? address = null;
            var seen = new List<string>();
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (address is null)
            {
                Assert.True(DateTime.UtcNow < deadline && !(process.HasExited && lines.Count == 0), "no address printed:\n" + string.Join("\n", seen));
                if (!lines.TryTake(out var line, TimeSpan.FromMilliseconds(500))) continue;
                seen.Add(line);
                if (Listening().Match(line) is { Success: true } m) address = m.Groups[1].Value;
            }
            Assert.StartsWith("http://127.0.0.1:", address);
            using var client = new HttpClient { BaseAddress = new Uri(address) };
            Assert.Equal(401, (int)(await client.GetAsync("/v1/models")).StatusCode);
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "sk-flag");
            using var response = await client.PostAsync("/v1/completions",
                GatewayFixture.Json("""{"model": "opt-tiny", "prompt": "Hello", "max_tokens": 3, "temperature": 0}"""));
            Assert.Equal(200, (int)response.StatusCode);
            // --api-key is the admin key too when the file names none.
            Assert.Equal(200, (int)(await client.GetAsync("/admin/state")).StatusCode);
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
        }
    }

    [Theory]
    [InlineData("http { colour = red }", "actorinfer.http.colour")]
    [InlineData("http { tenants { a { api-key-hashes = [], colour = red } } }", "actorinfer.http.tenants.a.colour")]
    [InlineData("http { tenants { a = 5 } }", "actorinfer.http.tenants.a")]
    [InlineData("http { tenants { a { api-key-hashes = [\"sk-plain-key\"] } } }", "actorinfer.http.tenants.a.api-key-hashes")]
    [InlineData("http { admin-key-hashes = \"x\" }", "actorinfer.http.admin-key-hashes")]
    [InlineData("http { port = 70000 }", "actorinfer.http.port")]
    [InlineData("http { enabled = maybe }", "actorinfer.http.enabled")]
    [InlineData("http { max-body-bytes = lots }", "actorinfer.http.max-body-bytes")]
    [InlineData("http { tenants { a { max-queued-requests = 0 } } }", "actorinfer.http.tenants.a.max-queued-requests")]
    [InlineData("http { tenants { a { max-priority = high } } }", "actorinfer.http.tenants.a.max-priority")]
    [InlineData("http { max-invalid-job-lines = -1 }", "actorinfer.http.max-invalid-job-lines")]
    public void A_bad_http_key_is_refused_naming_it(string section, string key)
    {
        var file = Path.Combine(GatewayFixture.TempDir(), "node.conf");
        File.WriteAllText(file, $"actorinfer {{\n  model = \"{Path.Combine(GatewayFixture.RepositoryRoot, "models", "opt-tiny")}\"\n  {section}\n}}");
        var ex = Assert.Throws<CliException>(() => NodeCommand.LoadSettings(file, new NodeCommand.NodeFlags(), new Dictionary<string, string?>()));
        Assert.Contains(key, ex.Message);
    }

    [Fact]
    public void A_gpu_index_the_runtime_would_not_honour_is_refused_naming_the_way_to_that_gpu()
    {
        // The runtime computes on the process's first visible GPU: cuda:1 would quietly run on GPU 0.
        var file = Path.Combine(GatewayFixture.TempDir(), "node.conf");
        File.WriteAllText(file, $"actorinfer {{\n  model = \"{Path.Combine(GatewayFixture.RepositoryRoot, "models", "opt-tiny")}\"\n  device = \"cuda:1\"\n}}");
        var (settings, _) = NodeCommand.LoadSettings(file, new NodeCommand.NodeFlags(), new Dictionary<string, string?>());
        var ex = Assert.Throws<SettingsException>(() => NodeModel.Load(settings));
        Assert.Contains("CUDA_VISIBLE_DEVICES=1", ex.Message);
    }

    [Fact]
    public void Flags_override_the_file_and_the_api_key_is_kept_only_as_its_hash()
    {
        var file = Path.Combine(GatewayFixture.TempDir(), "node.conf");
        File.WriteAllText(file, $"actorinfer {{\n  model = \"{Path.Combine(GatewayFixture.RepositoryRoot, "models", "opt-tiny")}\"\n  http {{ host = \"0.0.0.0\", port = 9000 }}\n}}");
        var (off, _) = NodeCommand.LoadSettings(file, new NodeCommand.NodeFlags(), new Dictionary<string, string?>());
        Assert.False(off.Http.Enabled);
        Assert.Equal(9000, off.Http.Port);
        var (on, _) = NodeCommand.LoadSettings(file, new NodeCommand.NodeFlags(Host: "127.0.0.1", Port: 8123, ApiKey: "sk-x"), new Dictionary<string, string?>());
        Assert.True(on.Http.Enabled);
        Assert.Equal(("127.0.0.1", 8123), (on.Http.Host, on.Http.Port));
        var tenant = Assert.Single(on.Http.Tenants);
        Assert.Equal("default", tenant.Name);
        Assert.Equal([HttpSettings.HashKey("sk-x")], tenant.KeyHashes);
        Assert.Equal("opt-tiny", on.Http.ServedModelName);
    }

    [Fact]
    public void The_api_key_flags_tenant_may_queue_what_the_files_tenant_defaults_say()
    {
        // A deployment that raises the queue for its tenants raises it for the flag's tenant too (a job of 2,000 requests
        // was refused at 1,024 before).
        var file = Path.Combine(GatewayFixture.TempDir(), "node.conf");
        var model = $"  model = \"{Path.Combine(GatewayFixture.RepositoryRoot, "models", "opt-tiny")}\"\n";
        File.WriteAllText(file, $"actorinfer {{\n{model}  http.tenant-defaults.max-queued-requests = 100000\n}}");
        var none = new Dictionary<string, string?>();
        var (raised, _) = NodeCommand.LoadSettings(file, new NodeCommand.NodeFlags(ApiKey: "sk-x"), none);
        Assert.Equal(100000, Assert.Single(raised.Http.Tenants).MaxQueuedRequests);
        File.WriteAllText(file, $"actorinfer {{\n{model}}}");
        var (plain, _) = NodeCommand.LoadSettings(file, new NodeCommand.NodeFlags(ApiKey: "sk-x"), none);
        Assert.Equal(1024, Assert.Single(plain.Http.Tenants).MaxQueuedRequests);
        File.WriteAllText(file, $"actorinfer {{\n{model}  http.tenant-defaults.max-queued-requests = 0\n}}");
        var ex = Assert.Throws<CliException>(() => NodeCommand.LoadSettings(file, new NodeCommand.NodeFlags(ApiKey: "sk-x"), none));
        Assert.Contains("actorinfer.http.tenant-defaults.max-queued-requests", ex.Message);
    }

    [Fact]
    public void The_role_flag_overrides_the_files_roles()
    {
        var file = Path.Combine(GatewayFixture.TempDir(), "node.conf");
        File.WriteAllText(file, $"actorinfer {{\n  model = \"{Path.Combine(GatewayFixture.RepositoryRoot, "models", "opt-tiny")}\"\n  cluster.enabled = on\n}}");
        var none = new Dictionary<string, string?>();
        Assert.Equal(ActorInfer.Actors.Configuration.NodeRoles.Both, NodeCommand.LoadSettings(file, new NodeCommand.NodeFlags(), none).Settings.Roles);
        Assert.Equal(["gateway"], NodeCommand.LoadSettings(file, new NodeCommand.NodeFlags(Roles: ["gateway"]), none).Settings.Roles.Names);
        Assert.Equal(["worker"], NodeCommand.LoadSettings(file, new NodeCommand.NodeFlags(Roles: ["worker"]), none).Settings.Roles.Names);
        Assert.Equal(["gateway", "worker"], NodeCommand.LoadSettings(file, new NodeCommand.NodeFlags(Roles: ["worker,gateway"]), none).Settings.Roles.Names);
        var ex = Assert.Throws<CliException>(() => NodeCommand.LoadSettings(file, new NodeCommand.NodeFlags(Roles: ["scheduler"]), none));
        Assert.Contains("actorinfer.roles", ex.Message);
    }
}
