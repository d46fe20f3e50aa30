using System.Security.Cryptography;
using System.Text;
using ActorInfer.Actors.Configuration;
using Microsoft.AspNetCore.Http;

namespace ActorInfer.Gateway;

/// <summary>Who may call a route.</summary>
public enum Access
{
    /// <summary>Anyone (health probes only).</summary>
    Public,
    /// <summary>A tenant's key: the route acts on that tenant's work.</summary>
    Tenant,
    /// <summary>A tenant's key or an admin key (read-only views such as the models).</summary>
    AnyKey,
    /// <summary>An admin key.</summary>
    Admin,
}

/// <summary>Endpoint metadata naming a route's <see cref="Access"/>; a route without it needs a tenant key.</summary>
public sealed record RouteAccess(Access Access);

/// <summary>The tenants and admin keys, looked up by the SHA-256 of a presented key (keys themselves are never kept).</summary>
public sealed class TenantDirectory
{
    private readonly Dictionary<string, TenantSettings> _byHash = new(StringComparer.Ordinal);
    private readonly HashSet<string> _adminHashes;

    public TenantDirectory(HttpSettings settings)
    {
        foreach (var tenant in settings.Tenants)
            foreach (var hash in tenant.KeyHashes)
                _byHash[hash] = tenant;
        _adminHashes = settings.AdminKeyHashes.ToHashSet(StringComparer.Ordinal);
    }

    public IEnumerable<TenantSettings> Tenants => _byHash.Values.Distinct();

    /// <summary>The caller's identity from <c>Authorization: Bearer KEY</c>; null fields when the key is unknown.</summary>
    public Caller Identify(HttpRequest request)
    {
        var header = request.Headers.Authorization.ToString();
        const string scheme = "Bearer ";
        if (!header.StartsWith(scheme, StringComparison.OrdinalIgnoreCase) || header.Length == scheme.Length)
            return new Caller(false, null, false);
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(header[scheme.Length..].Trim())));
        return new Caller(true, _byHash.GetValueOrDefault(hash), _adminHashes.Contains(hash));
    }
}

/// <param name="PresentedKey">Whether a bearer key was sent at all.</param>
public sealed record Caller(bool PresentedKey, TenantSettings? Tenant, bool IsAdmin)
{
    public bool IsKnown => Tenant is not null || IsAdmin;
}

public static class CallerHttpContextExtensions
{
    private const string TenantItem = "actorinfer.tenant";
    private const string AdminItem = "actorinfer.admin";

    public static void SetTenant(this HttpContext context, TenantSettings tenant) => context.Items[TenantItem] = tenant;

    public static void SetAdmin(this HttpContext context) => context.Items[AdminItem] = true;

    /// <summary>Whether the caller's key is an admin key (a key may be a tenant's and an admin's at once).</summary>
    public static bool IsAdmin(this HttpContext context) => context.Items.ContainsKey(AdminItem);

    /// <summary>The authenticated tenant (set by the key check before any tenant route runs).</summary>
    public static TenantSettings Tenant(this HttpContext context) =>
        context.Items[TenantItem] as TenantSettings ?? throw ApiError.Unauthorized("this route needs a tenant's API key");
}
