using ActorInfer.Model.Layers;
using TorchSharp;

namespace ActorInfer.Model.Tests.Generation;

public class BatchLayoutTests
{
    [Fact]
    public void Positions_come_from_real_lengths_with_offset_two()
    {
        var layout = new BatchLayout([3, 1]);
        using var pos = layout.PrefillPositions(torch.CPU);
        Assert.Equal(new long[] { 2, 3, 4, 1, 1, 2 }, pos.data<long>().ToArray());
        using var next = layout.DecodePositions(3, maxPositions: 64, torch.CPU);
        Assert.Equal(new long[] { 5, 3 }, next.data<long>().ToArray());
    }

    [Fact]
    public void Past_the_context_a_position_stays_at_the_last_one()
    {
        // A context of 6 positions: at cache index 7 the longer sequence would be at position 7, the shorter at 5.
        var layout = new BatchLayout([3, 1]);
        using var next = layout.DecodePositions(7, maxPositions: 6, torch.CPU);
        Assert.Equal(new long[] { 5 + 2, 5 + 2 }, next.data<long>().ToArray());
        using var within = layout.DecodePositions(6, maxPositions: 6, torch.CPU);
        Assert.Equal(new long[] { 5 + 2, 4 + 2 }, within.data<long>().ToArray());
    }

    [Fact]
    public void Prefill_mask_is_causal_hides_pads_and_never_empties_a_row()
    {
        var layout = new BatchLayout([3, 1]);
        using var mask = layout.PrefillMask(torch.CPU);
        var m = mask.data<bool>().ToArray();
        // Sequence 1 has two pads: its pad queries see only themselves, its real query only itself.
        bool At(int b, int i, int j) => m[(b * 3 + i) * 3 + j];
        Assert.True(At(1, 0, 0));
        Assert.False(At(1, 1, 0));
        Assert.True(At(1, 1, 1));
        Assert.False(At(1, 2, 0));
        Assert.False(At(1, 2, 1));
        Assert.True(At(1, 2, 2));
        Assert.False(At(0, 0, 1));
        Assert.True(At(0, 2, 0));
    }

    [Fact]
    public void Pad_id_inside_a_prompt_is_a_real_token()
    {
        var layout = new BatchLayout([3, 2]);
        using var ids = layout.PadPrompts([[1, 1, 5], [1, 9]], padId: 1, torch.CPU);
        Assert.Equal(new long[] { 1, 1, 5, 1, 1, 9 }, ids.data<long>().ToArray());
        using var decode = layout.DecodeMask(3, torch.CPU);
        Assert.Equal(new[] { true, true, true, true, false, true, true, true }, decode.data<bool>().ToArray());
    }

    [Fact]
    public void Empty_prompts_are_refused() => Assert.Throws<ArgumentException>(() => new BatchLayout([2, 0]));
}
