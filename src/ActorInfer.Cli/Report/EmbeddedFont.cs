using ScottPlot;
using SkiaSharp;

namespace ActorInfer.Cli.Report;

/// <summary>
/// DejaVu Sans (Bitstream Vera licence, <c>Fonts/LICENSE-DejaVu.txt</c>), read from the program's own resources: the
/// report is drawn with it whatever fonts the machine has, and a machine without any still gets text.
/// </summary>
internal sealed class EmbeddedFont : IFontResolver
{
    public const string Name = "DejaVu Sans";
    private const string Resource = "ActorInfer.Cli.Report.DejaVuSans.ttf";
    private static readonly Lazy<SKTypeface> Typeface = new(Load);
    private static readonly Lock Gate = new();

    /// <summary>Makes the font known to the plotting library (once per process; its font table is process-wide).</summary>
    public static void Register()
    {
        lock (Gate)
            if (!Fonts.FontResolvers.OfType<EmbeddedFont>().Any())
                Fonts.FontResolvers.Add(new EmbeddedFont());
    }

    public SKTypeface? CreateTypeface(string fontName, FontWeight weight, FontSlant slant, FontSpacing spacing) =>
        fontName == Name ? Typeface.Value : null;

    public SKTypeface? CreateTypeface(string fontName, bool bold, bool italic) =>
        fontName == Name ? Typeface.Value : null;

    private static SKTypeface Load()
    {
        using var stream = typeof(EmbeddedFont).Assembly.GetManifestResourceStream(Resource)
            ?? throw new InvalidOperationException($"the resource {Resource} is missing from the program");
        using var data = SKData.Create(stream);
        return SKTypeface.FromData(data) ?? throw new InvalidDataException($"{Resource} is not a font");
    }
}
