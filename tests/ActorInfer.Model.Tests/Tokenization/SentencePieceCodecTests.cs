using ActorInfer.Model.Generation;
using ActorInfer.Model.Tokenization;
using ActorInfer.Model.Weights;
using Google.Protobuf;

namespace ActorInfer.Model.Tests.Tokenization;

/// <summary>
/// A SentencePiece BPE model written by the test (the protobuf fields of sentencepiece_model.proto), read as Llama 2's
/// and Mistral's tokenizer.model are: the pieces merge by their scores, the BOS is prepended unless the config says not.
/// </summary>
public sealed class SentencePieceCodecTests : IDisposable
{
    private static readonly string[] Pieces =
        ["<unk>", "<s>", "</s>", "\u2581", "h", "e", "l", "o", "\u2581h", "\u2581he", "ll", "llo", "\u2581hello", "w", "r", "d", "\u2581w", "or", "\u2581wor", "ld", "\u2581world"];

    private readonly string _dir = Path.Combine(Path.GetTempPath(), "actorinfer-sentencepiece-tests", Guid.NewGuid().ToString("N"));

    public SentencePieceCodecTests()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllBytes(Path.Combine(_dir, SentencePieceCodec.ModelFile), Model());
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_folder_with_only_tokenizer_model_encodes_with_its_bos_and_decodes_back()
    {
        var codec = Assert.IsType<SentencePieceCodec>(ModelFiles.OpenCodec(_dir));
        // "hello world" -> "▁hello▁world": ▁h, ▁he, ll, llo, ▁hello by score; then ▁w, or, ld, ▁wor, ▁world.
        Assert.Equal([1, 12, 20], codec.Encode("hello world"));
        Assert.Equal("hello world", codec.Decode([12, 20]));
        Assert.Equal("hello world", codec.Decode([1, 12, 20, 2]));
    }

    [Fact]
    public void A_token_at_a_time_keeps_the_spaces_a_window_decoding_drops()
    {
        // Decoding a window that begins with ▁world drops its space ("world"); the difference of two such decodings keeps it.
        var codec = ModelFiles.OpenCodec(_dir)!;
        var text = new IncrementalText(codec.Decode);
        Assert.Equal(["hello", " world", "", " hello", " world"], new[] { 12, 20, 2, 12, 20 }.Select(text.Add));
        Assert.Equal("hello world hello world", text.From(0));
        Assert.Equal(codec.Decode([12, 20, 2, 12, 20]), text.From(0));
    }

    [Fact]
    public void Add_bos_token_false_leaves_the_bos_out()
    {
        File.WriteAllText(Path.Combine(_dir, "tokenizer_config.json"), """{"add_bos_token": false, "bos_token": "<s>"}""");
        var codec = SentencePieceCodec.Load(_dir);
        Assert.Null(codec.BosTokenId);
        Assert.Equal([12, 20], codec.Encode("hello world"));
    }

    [Fact]
    public void A_sentencepiece_style_tokenizer_json_alone_is_refused_naming_tokenizer_model()
    {
        var other = Path.Combine(_dir, "json-only");
        Directory.CreateDirectory(other);
        File.WriteAllText(Path.Combine(other, "tokenizer.json"), """
            {"normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"}]}, "pre_tokenizer": null,
             "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}]},
             "model": {"type": "BPE", "byte_fallback": true, "vocab": {"a": 0}, "merges": []}}
            """);
        var error = Assert.Throws<InvalidDataException>(() => ModelFiles.OpenCodec(other));
        Assert.Contains("tokenizer.model", error.Message);
    }

    private static byte[] Model()
    {
        using var buffer = new MemoryStream();
        var output = new CodedOutputStream(buffer);
        for (var id = 0; id < Pieces.Length; id++)
        {
            // Merged pieces score lower the later they should merge; single characters score 0.
            var type = id == 0 ? 2 : id <= 2 ? 3 : 1;
            var score = Pieces[id].Length > 1 && id > 2 ? -id : 0f;
            var piece = Message(o =>
            {
                o.WriteTag(1, WireFormat.WireType.LengthDelimited);
                o.WriteString(Pieces[id]);
                o.WriteTag(2, WireFormat.WireType.Fixed32);
                o.WriteFloat(score);
                o.WriteTag(3, WireFormat.WireType.Varint);
                o.WriteEnum(type);
            });
            output.WriteTag(1, WireFormat.WireType.LengthDelimited);
            output.WriteBytes(ByteString.CopyFrom(piece));
        }
        var trainer = Message(o =>
        {
            o.WriteTag(3, WireFormat.WireType.Varint); o.WriteEnum(2); // model_type: BPE
            o.WriteTag(4, WireFormat.WireType.Varint); o.WriteInt32(Pieces.Length); // vocab_size
            o.WriteTag(40, WireFormat.WireType.Varint); o.WriteInt32(0); // unk_id
            o.WriteTag(41, WireFormat.WireType.Varint); o.WriteInt32(1); // bos_id
            o.WriteTag(42, WireFormat.WireType.Varint); o.WriteInt32(2); // eos_id
            o.WriteTag(43, WireFormat.WireType.Varint); o.WriteInt32(-1); // pad_id
        });
        output.WriteTag(2, WireFormat.WireType.LengthDelimited);
        output.WriteBytes(ByteString.CopyFrom(trainer));
        var normalizer = Message(o =>
        {
            o.WriteTag(1, WireFormat.WireType.LengthDelimited); o.WriteString("identity");
            o.WriteTag(3, WireFormat.WireType.Varint); o.WriteBool(true); // add_dummy_prefix
            o.WriteTag(4, WireFormat.WireType.Varint); o.WriteBool(false); // remove_extra_whitespaces
            o.WriteTag(5, WireFormat.WireType.Varint); o.WriteBool(true); // escape_whitespaces
        });
        output.WriteTag(3, WireFormat.WireType.LengthDelimited);
        output.WriteBytes(ByteString.CopyFrom(normalizer));
        output.Flush();
        return buffer.ToArray();
    }

    private static byte[] Message(Action<CodedOutputStream> write)
    {
        using var buffer = new MemoryStream();
        var output = new CodedOutputStream(buffer);
        write(output);
        output.Flush();
        return buffer.ToArray();
    }
}
