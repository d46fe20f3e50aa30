using System.Globalization;
using System.Text.RegularExpressions;

namespace ActorInfer.Planning;

/// <summary>
/// Memory sizes as people write them, read the same way by every flag, configuration key, file and route. Decimal
/// units are powers of 1000 (KB, MB, GB, TB), binary units powers of 1024 (KiB, MiB, GiB, TiB): "16GB" is 16·10^9
/// bytes, "16GiB" 16·2^30. A bare number (or "B") is bytes. A bare K, M, G or T is refused: half of the tools people
/// come from read "8G" as 8·10^9 bytes and half as 8·2^30, so the message asks for one of the two. Units are
/// case-insensitive. Note that FlexGen's own code means 2^30 by "GB" (flexgen/utils.py); here GB is the SI unit.
/// </summary>
public static partial class ByteSize
{
    [GeneratedRegex(@"^\s*(?<number>[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?)\s*(?<unit>[a-zA-Z]*)\s*$")]
    private static partial Regex Pattern();

    private static readonly Dictionary<string, double> Units = new(StringComparer.OrdinalIgnoreCase)
    {
        [""] = 1, ["B"] = 1,
        ["KB"] = 1e3, ["MB"] = 1e6, ["GB"] = 1e9, ["TB"] = 1e12,
        ["KiB"] = 1L << 10, ["MiB"] = 1L << 20, ["GiB"] = 1L << 30, ["TiB"] = 1L << 40,
    };

    private static readonly HashSet<string> Ambiguous = new(StringComparer.OrdinalIgnoreCase) { "K", "M", "G", "T" };

    /// <summary>Parses a size; throws a <see cref="FormatException"/> naming <paramref name="what"/> and the text on anything else.</summary>
    public static long Parse(string text, string what = "size")
    {
        if (!TryParse(text, out var bytes, out var problem))
            throw new FormatException($"{what}: {problem}");
        return bytes;
    }

    /// <summary>Parses a size of zero or more bytes; <paramref name="problem"/> says what is wrong otherwise.</summary>
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
            problem = $"'{text}' is negative; a size must not be";
            return false;
        }
        var match = Pattern().Match(text);
        if (match.Success && Ambiguous.Contains(match.Groups["unit"].Value))
        {
            var number = match.Groups["number"].Value;
            var prefix = match.Groups["unit"].Value.ToUpperInvariant();
            problem = $"'{text}' is ambiguous: write {number}{prefix}B ({number} x 10^{Exponent(prefix)} bytes) or {number}{prefix}iB ({number} x 2^{Exponent(prefix) / 3 * 10} bytes)";
            return false;
        }
        if (!match.Success || !Units.TryGetValue(match.Groups["unit"].Value, out var unit))
        {
            problem = $"'{text}' is not a size (examples: 16GB, 16GiB, 1.5TB, 512MiB, 1000000)";
            return false;
        }
        var value = double.Parse(match.Groups["number"].Value, CultureInfo.InvariantCulture) * unit;
        if (value > long.MaxValue / 2)
        {
            problem = $"'{text}' is too large";
            return false;
        }
        bytes = (long)Math.Round(value);
        problem = "";
        return true;
    }

    private static int Exponent(string prefix) => prefix switch { "K" => 3, "M" => 6, "G" => 9, _ => 12 };

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

    /// <summary>Binary units with two decimals ("22.84GiB"), as memory budgets are usually given.</summary>
    public static string FormatBinary(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):0.##}GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):0.##}MiB",
        >= 1L << 10 => $"{bytes / (double)(1L << 10):0.##}KiB",
        _ => $"{bytes}B",
    };
}
