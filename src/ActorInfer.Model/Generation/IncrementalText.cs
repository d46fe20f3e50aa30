using System.Text;

namespace ActorInfer.Model.Generation;

/// <summary>
/// The text of a sequence of token ids that grows a token at a time, each token decoding only a few ids, so that a
/// streamed completion costs time linear in its length. A new id's text is the decoding of a window (from the last
/// token but one whose text came out whole, to the new one) less the decoding of the same window without the ids that
/// came since: a decoder that treats a window's first token alike on both sides (SentencePiece drops its leading space)
/// cancels out. A token that ends inside a multi-byte character adds nothing until a later token completes it; the window
/// then spans both. The text equals decoding every id at once for byte-level and SentencePiece decoders (tests hold it).
/// </summary>
public sealed class IncrementalText(Func<IReadOnlyList<int>, string> decode)
{
    private readonly List<int> _ids = [];
    private readonly StringBuilder _text = new();
    // The window: _ids[_prefix.._read] came out whole before the last emission; _ids[_read..] are not out yet.
    private int _prefix, _read;

    /// <summary>Every id added.</summary>
    public IReadOnlyList<int> Ids => _ids;

    /// <summary>The length of the text out so far.</summary>
    public int Length => _text.Length;

    /// <summary>The text out so far from <paramref name="start"/> on.</summary>
    public string From(int start) => _text.ToString(start, _text.Length - start);

    /// <summary>
    /// Whether the last id added ends inside a character: it brought out nothing, and a later id will bring its text out
    /// (an id that decodes to nothing, a special token, brings out nothing but does not wait).
    /// </summary>
    public bool InCharacter { get; private set; }

    /// <summary>Adds an id and returns the text it brings out: empty where it adds none or ends inside a character.</summary>
    public string Add(int id)
    {
        _ids.Add(id);
        var added = Pending();
        InCharacter = added.EndsWith('\uFFFD');
        if (added.Length == 0 || InCharacter) return "";
        _text.Append(added);
        _prefix = _read;
        _read = _ids.Count;
        return added;
    }

    /// <summary>
    /// The text of the ids not out yet, as decoding them now gives it (an unfinished character as U+FFFD), taken as out:
    /// for the last token of a finished sequence.
    /// </summary>
    public string Flush()
    {
        var rest = Pending();
        _text.Append(rest);
        _prefix = _read = _ids.Count;
        InCharacter = false;
        return rest;
    }

    private string Pending()
    {
        if (_read == _ids.Count) return "";
        var window = _ids.GetRange(_prefix, _ids.Count - _prefix);
        var before = _read > _prefix ? decode(window.GetRange(0, _read - _prefix)) : "";
        var after = decode(window);
        return after.Length > before.Length && after.StartsWith(before, StringComparison.Ordinal) ? after[before.Length..] : "";
    }
}
