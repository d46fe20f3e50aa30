namespace ActorInfer.Model.Tokenization;

/// <summary>
/// GPT-2's byte-level alphabet: every byte is spelled as one printable character so that BPE vocabularies hold
/// no whitespace or control characters. Printable Latin-1 bytes stand for themselves; the other 68 bytes take
/// the characters from U+0100 on, in byte order.
/// </summary>
internal static class ByteLevelAlphabet
{
    private static readonly Dictionary<char, byte> CharToByte = Build();

    public static bool TryGetByte(char c, out byte value) => CharToByte.TryGetValue(c, out value);

    private static Dictionary<char, byte> Build()
    {
        var map = new Dictionary<char, byte>(256);
        var next = 0;
        for (var b = 0; b < 256; b++)
        {
            var printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[printable ? (char)b : (char)(256 + next++)] = (byte)b;
        }
        return map;
    }
}
