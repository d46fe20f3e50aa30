using System.Globalization;

namespace ActorInfer.Actors.Configuration;

/// <summary>Byte counts as people write them: 1000000, "512MiB", "8GiB", "8GB", "1.5 GiB".</summary>
public static class ByteSize
{
    private static readonly (string Suffix, long Factor)[] Units =
    [
        ("KiB", 1L << 10), ("MiB", 1L << 20), ("GiB", 1L << 30), ("TiB", 1L << 40),
        ("KB", 1000L), ("MB", 1000_000L), ("GB", 1000_000_000L), ("TB", 1000_000_000_000L),
        ("K", 1L << 10), ("M", 1L << 20), ("G", 1L << 30), ("T", 1L << 40),
        ("B", 1L),
    ];

    public static bool TryParse(string text, out long bytes)
    {
        bytes = 0;
        var s = text.Trim();
        long factor = 1;
        foreach (var (suffix, f) in Units)
        {
            if (!s.EndsWith(suffix, StringComparison.OrdinalIgnoreCase)) continue;
            s = s[..^suffix.Length].Trim();
            factor = f;
            break;
        }
        if (!double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var value)) return false;
        if (value < 0 || double.IsNaN(value) || value * factor > long.MaxValue) return false;
        bytes = (long)Math.Round(value * factor);
        return true;
    }

    public static long Parse(string text) =>
        TryParse(text, out var bytes) ? bytes : throw new FormatException($"'{text}' is not a byte size (e.g. 8GiB, 512MiB, 1000000)");

    public static string Format(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):0.##}GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):0.##}MiB",
        >= 1L << 10 => $"{bytes / (double)(1L << 10):0.##}KiB",
        _ => $"{bytes}B",
    };
}
