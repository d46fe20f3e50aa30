using ActorInfer.Runtime.Copies;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Schedule;

/// <summary>
/// One layer's weight copies from CPU memory, in pieces of at most <see cref="PieceBytes"/>, issued in order as the
/// caller asks. The device's copy engine serves host-to-device copies in the order they were issued, whichever stream
/// they are on, so a layer's weights issued at once put every small load issued after them (a batch's hidden state,
/// CPU attention's output) behind the whole layer. Issued a share per GPU batch, they let each batch's small loads
/// through after that batch's share.
/// </summary>
internal sealed class WeightCopies(Transfers transfers, long pieceBytes = WeightCopies.PieceBytes)
{
    /// <summary>About a millisecond over a PCIe 4 or 5 link.</summary>
    public const long PieceBytes = 64L << 20;

    private readonly List<(Tensor To, Tensor From, long Bytes)> _pieces = [];
    private long _total, _issued;
    private int _next;

    public void Add(Tensor to, Tensor from)
    {
        var bytes = to.NumberOfElements * to.ElementSize;
        var elements = to.NumberOfElements;
        var perPiece = Math.Max(1, pieceBytes / to.ElementSize);
        if (elements <= perPiece)
        {
            _pieces.Add((to, from, bytes));
        }
        else
        {
            using var flatTo = to.view(-1);
            using var flatFrom = from.view(-1);
            for (long start = 0; start < elements; start += perPiece)
            {
                var count = Math.Min(perPiece, elements - start);
                var pieceTo = flatTo.narrow(0, start, count);
                var pieceFrom = flatFrom.narrow(0, start, count);
                // The views live until the copies complete (a CPU engine reads them on its worker).
                transfers.Keep(pieceTo);
                transfers.Keep(pieceFrom);
                _pieces.Add((pieceTo, pieceFrom, count * to.ElementSize));
            }
        }
        _total += bytes;
    }

    /// <summary>Bytes issued so far.</summary>
    public long Issued => _issued;

    /// <summary>Issues pieces in order until at least <paramref name="fraction"/> (0..1) of the bytes are issued.</summary>
    public void IssueThrough(double fraction)
    {
        var target = fraction >= 1 ? _total : (long)Math.Ceiling(_total * fraction);
        while (_next < _pieces.Count && (_issued < target || _pieces[_next].Bytes == 0))
        {
            var (to, from, bytes) = _pieces[_next++];
            transfers.Add(transfers.Engine.CopyAsync(to, from, CopyDirection.LoadWeights));
            _issued += bytes;
        }
    }
}
