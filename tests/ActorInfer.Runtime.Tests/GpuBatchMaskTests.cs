using ActorInfer.Model.Layers;
using ActorInfer.Runtime.Schedule;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

/// <summary>A GPU batch's decoding masks, built on the device from its padding.</summary>
public sealed class GpuBatchMaskTests
{
    [Fact]
    public void A_decoding_mask_over_more_indices_masks_padding_and_everything_after_the_step()
    {
        // Prompts of 3 and 1 tokens: padded length 3, the second sequence padded by 2. Decoding step 2 writes index 4.
        var layout = new BatchLayout([3, 1]);
        using var batch = new GpuBatch(new GpuBatchIndex(0), [], layout, capacity: 8);
        var step = new TokenStep(2);
        Assert.Equal(4, step.CacheIndex(layout));

        var mask = batch.Mask(step, CPU, attended: 7)!;
        Assert.Equal(new long[] { 2, 1, 1, 7 }, mask.shape);
        Assert.Equal(new[] { true, true, true, true, true, false, false, false, false, true, true, true, false, false },
            mask.data<bool>().ToArray());
        Assert.Same(mask, batch.Mask(step, CPU, attended: 7));
        Assert.Throws<ArgumentException>(() => batch.Mask(step, CPU, attended: 4));
        // Its negation, for the batched products, is kept for the step as well.
        var excluded = batch.Excluded(step, CPU, attended: 7)!;
        Assert.Equal(mask.data<bool>().ToArray().Select(m => !m), excluded.data<bool>().ToArray());
        Assert.Same(excluded, batch.Excluded(step, CPU, attended: 7));
        Assert.NotSame(excluded, batch.Excluded(step.Next(), CPU, attended: 7));

        // Over exactly the filled indices it is the layout's own decoding mask.
        using var expected = layout.DecodeMask(4, CPU);
        Assert.Equal(expected.data<bool>().ToArray(), batch.Mask(step, CPU)!.data<bool>().ToArray());
    }

    [Fact]
    public void Without_padding_only_indices_past_the_step_need_a_mask()
    {
        var layout = new BatchLayout([3, 3]);
        using var batch = new GpuBatch(new GpuBatchIndex(0), [], layout, capacity: 8);
        var step = new TokenStep(2);
        Assert.Null(batch.Mask(step, CPU));
        Assert.Null(batch.Mask(new TokenStep(0), CPU));
        Assert.Equal(new[] { true, true, true, true, true, false, true, true, true, true, true, false },
            batch.Mask(step, CPU, attended: 6)!.data<bool>().ToArray());
    }
}
