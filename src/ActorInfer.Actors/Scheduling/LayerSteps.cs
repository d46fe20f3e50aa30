using System.Diagnostics;
using System.Globalization;
using static ActorInfer.Actors.Scheduling.SchedulerProtocol;

namespace ActorInfer.Actors.Scheduling;

/// <summary>
/// The layer steps of the running block, measured as each step begins (the time since the block's step before, over
/// the layers), and a budget change's honour line, which names them beside its time to honour: a change waiting for a
/// boundary applies at the next layer's start, within one layer step of its arrival. Marked by the scheduler on the
/// tensor thread.
/// </summary>
internal sealed class LayerSteps
{
    // The last decoding step's time over the layers (milliseconds; 0 until a block has run two decoding steps): the
    // layer step a budget change's time to honour is compared with.
    private double _decodingMs;
    private double _prefillMs;
    private long _stepStartedAt;
    private bool _stepWasDecoding;

    /// <summary><paramref name="step"/> of the running block begins now (its embeddings made), over <paramref name="layers"/> layers.</summary>
    public void Began(TokenStep step, int layers)
    {
        var now = Stopwatch.GetTimestamp();
        // A step that followed another of the block: its time over the layers is the layer step (of decoding, or of the
        // prefill when it followed the prefill).
        if (!step.IsPrefill && _stepStartedAt != 0)
        {
            var layerStep = Stopwatch.GetElapsedTime(_stepStartedAt, now).TotalMilliseconds / layers;
            if (_stepWasDecoding) _decodingMs = layerStep;
            else _prefillMs = layerStep;
        }
        _stepStartedAt = now;
        _stepWasDecoding = !step.IsPrefill;
    }

    /// <summary>No block runs.</summary>
    public void Idle() => _stepWasDecoding = false;

    /// <summary>
    /// A budget change's honour line (one whose planning time is known): its time to honour and its parts, where it
    /// arrived and the layer steps.
    /// </summary>
    public string HonourLine(PolicyHonoured h)
    {
        static string Ms(TimeSpan t) => t.TotalMilliseconds.ToString("F2", CultureInfo.InvariantCulture);
        var planning = h.Planning!.Value;
        return $"budget change honoured in {Ms(h.Elapsed)} ms{(h.WithinAtChange ? " (within the budgets at the change)" : "")}: " +
               $"planning {Ms(planning)}, to the scheduler {Ms(h.Arrival - planning)}, to a boundary {Ms(h.ToBoundary)}, " +
               $"applying {Ms(h.Applying)} ms{(h.ApplyingParts.Length > 0 ? $" ({h.ApplyingParts})" : "")}; " +
               $"arrived {(h.ArrivedIn.Length == 0 ? "-" : "in " + h.ArrivedIn)}; " +
               Described(h.ArrivedIn) + Behind(h, planning);
    }

    /// <summary>
    /// Where the way to the scheduler or to a boundary took a millisecond or more: the longest message the model's tensor
    /// thread ran meanwhile, which held the change.
    /// </summary>
    private static string Behind(PolicyHonoured h, TimeSpan planning)
    {
        var parts = new List<string>();
        if ((h.Arrival - planning).TotalMilliseconds >= 1 && h.BehindOnArrival.Length > 0) parts.Add($"on the way, the tensor thread ran {h.BehindOnArrival}");
        if (h.ToBoundary.TotalMilliseconds >= 1 && h.BehindToBoundary.Length > 0) parts.Add($"to the boundary, {h.BehindToBoundary}");
        return parts.Count == 0 ? "" : "; " + string.Join("; ", parts);
    }

    /// <summary>The last measured layer steps, the one of the part of a block the change arrived in first.</summary>
    private string Described(string arrivedIn)
    {
        static string Ms(double ms) => ms.ToString("F2", CultureInfo.InvariantCulture);
        var decoding = _decodingMs > 0 ? $"a decoding layer step {Ms(_decodingMs)} ms" : "no decoding layer step measured yet";
        var prefill = _prefillMs > 0 ? $"a prefill layer step {Ms(_prefillMs)} ms" : "no prefill layer step measured yet";
        return arrivedIn == "prefill" ? $"{prefill}, {decoding}" : $"{decoding}, {prefill}";
    }
}
