using System.Globalization;
using System.Text.RegularExpressions;

namespace ActorInfer.Planning;

/// <summary>
/// Memory sizes as people write them. Decimal units are powers of 1000 (KB, MB, GB, TB; also K, M, G, T), binary
/// units powers of 1024 (KiB, MiB, GiB, TiB): "16GB" is 16·10^9 bytes, "16GiB" 16·2^30. A bare number is bytes.
/// Note that FlexGen's own code means 2^30 by "GB" (flexgen/utils.py); here GB is the SI unit.
/// </summary>
public static partial class ByteSize
{
    [GeneratedRegex(@"^\s*(?<number>[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?)\s*(?<unit>[a-zA-Z]*)\s*$")]
    private static partial Regex Pattern();

    private static readonly Dictionary<string, double> Units = new(StringComparer.OrdinalIgnoreCase)
    {
        [""] = 1, ["B"] = 1,
        ["K"] = 1e3, ["KB"] = 1e3, ["M"] = 1e6, ["MB"] = 1e6, ["G"] = 1e9, ["GB"] = 1e9, ["T"] = 1e12, ["TB"] = 1e12,
        ["KiB"] = 1L << 10, ["MiB"] = 1L << 20, ["GiB"] = 1L << 30, ["TiB"] = 1L << 40,
    };

    /// <summary>Parses a size; throws a <see cref="FormatException"/> naming the text on anything else, including zero or negative sizes.</summary>
    public static long Parse(string text, string what = "size")
    {
        if (!TryParse(text, out var bytes, out var problem))
            throw new FormatException($"{what}: {problem}");
        return bytes;
    }

    public static bool TryParse(string? text, out long bytes, out string problem)
    {
        bytes = 0;
        if (string.IsNullOrWhiteSpace(text))
        {
            problem = "empty size";
            return false;
        }
        if (text.TrimStart().StartsWith('-'))
        {
            problem = $"'{text}' is negative; a size must be positive";
            return false;
        }
        var match = Pattern().Match(text);
        if (!match.Success || !Units.TryGetValue(match.Groups["unit"].Value, out var unit))
        {
            problem = $"'{text}' is not a size (examples: 16GB, 16GiB, 208G, 1.5TB, 1000000)";
            return false;
        }
        var value = double.Parse(match.Groups["number"].Value, CultureInfo.InvariantCulture) * unit;
        if (value < 1)
        {
            problem = $"'{text}' is zero; a size must be positive";
            return false;
        }
        if (value > long.MaxValue / 2)
        {
            problem = $"'{text}' is too large";
            return false;
        }
        bytes = (long)Math.Round(value);
        problem = "";
        return true;
    }

    /// <summary>Decimal gigabytes with two decimals ("12.34 GB"), or a smaller unit below one gigabyte.</summary>
    public static string Format(double bytes) => bytes switch
    {
        double.PositiveInfinity => "unbounded",
        >= 1e12 => $"{bytes / 1e12:0.###} TB",
        >= 1e9 => $"{bytes / 1e9:0.##} GB",
        >= 1e6 => $"{bytes / 1e6:0.##} MB",
        >= 1e3 => $"{bytes / 1e3:0.##} KB",
        _ => $"{bytes:0} B",
    };
}
