using ActorInfer.Model.Layers;
using static TorchSharp.torch;

namespace ActorInfer.Model.Generation;

/// <summary>Says when work queued on a device has finished (a CUDA event, for example).</summary>
public interface IReadyFence : IDisposable
{
    bool IsReady { get; }

    /// <summary>Blocks until <see cref="IsReady"/>.</summary>
    void Wait()
    {
        var spin = new SpinWait();
        while (!IsReady) spin.SpinOnce();
    }
}

/// <summary>
/// Tokens chosen on the device and on their way to the host: <see cref="IsReady"/> says when reading them will not
/// wait for the device, <see cref="Complete"/> appends them to their sequences. Lets a caller on the tensor thread do
/// other work (read its mail) while the device finishes the step instead of blocking in a synchronous copy.
/// </summary>
public sealed class PendingTokens : IDisposable
{
    private readonly IReadOnlyList<SequenceState> _sequences;
    private readonly Func<IReadOnlyList<int>, string>? _decode;
    private readonly long _vocabulary;
    private Tensor? _ids;
    private Tensor? _logprobs;
    private IReadyFence? _fence;
    private Action<int>? _then;
    private bool _completed;

    /// <summary>Nothing pending: the tokens were appended already.</summary>
    public static PendingTokens Done() => new([], null, 0, null, null, null) { _completed = true };

    internal PendingTokens(IReadOnlyList<SequenceState> sequences, Func<IReadOnlyList<int>, string>? decode, long vocabulary, Tensor? ids,
        Tensor? logprobs, IReadyFence? fence)
    {
        _sequences = sequences;
        _decode = decode;
        _vocabulary = vocabulary;
        _ids = ids;
        _logprobs = logprobs;
        _fence = fence;
    }

    /// <summary>Whether the host copies have arrived (always, once completed or without a fence).</summary>
    public bool IsReady => _completed || _fence is null || _fence.IsReady;

    /// <summary>Runs <paramref name="then"/> with the number of tokens appended, once they are (with 0 if they are abandoned).</summary>
    public PendingTokens Then(Action<int> then)
    {
        if (_completed) then(0);
        else _then += then;
        return this;
    }

    /// <summary>Appends one token to every unfinished sequence (waiting for the copies if they are still in flight); returns how many.</summary>
    public int Complete()
    {
        if (_completed) return 0;
        _fence?.Wait();
        _completed = true;
        var ids = _ids!.data<long>().ToArray();
        var logprobs = _logprobs!.data<float>().ToArray();
        var appended = 0;
        // A token outside the vocabulary would reach the device as an embedding index, where the kernel's bounds check
        // ends the whole CUDA context: fail this block here instead, naming the row.
        for (var b = 0; b < _sequences.Count; b++)
            if (!_sequences[b].IsFinished && (ids[b] < 0 || ids[b] >= _vocabulary))
            {
                Release();
                throw new InvalidOperationException(
                    $"the token read back for row {b} of {_sequences.Count} is {ids[b]}, outside the vocabulary of {_vocabulary} (the copy from the device was read before it arrived, or the logits are corrupt)");
            }
        for (var b = 0; b < _sequences.Count; b++)
            if (!_sequences[b].IsFinished)
            {
                _sequences[b].Append((int)ids[b], logprobs[b], _decode!);
                appended++;
            }
        Release();
        _then?.Invoke(appended);
        return appended;
    }

    /// <summary>Abandons the tokens if they were not appended (a dropped batch's sequences start again from their progress).</summary>
    public void Dispose()
    {
        if (_completed) return;
        _completed = true;
        Release();
        _then?.Invoke(0);
    }

    private void Release()
    {
        _ids?.Dispose();
        _ids = null;
        _logprobs?.Dispose();
        _logprobs = null;
        _fence?.Dispose();
        _fence = null;
    }
}

/// <summary>
/// Turns the last position's logits of a batch into one new token per unfinished sequence. Greedy choices and
/// log-probabilities are computed on the logits' device; only sampled rows travel to the host whole.
/// </summary>
public static class TokenChooser
{
    /// <param name="lastLogits">[B, vocab], row b for <paramref name="sequences"/>[b].</param>
    public static void ChooseAndAppend(Tensor lastLogits, IReadOnlyList<SequenceState> sequences, Func<IReadOnlyList<int>, string> decode)
    {
        using var pending = Launch(lastLogits, sequences, decode, fence: null);
        pending.Complete();
    }

    /// <summary>
    /// Chooses the tokens of a batch. When every unfinished row is greedy and <paramref name="fence"/> is given, the
    /// tokens are pending until the fence is ready: on CUDA the choices and their log-probabilities are copied to
    /// pinned host memory without waiting and the fence (recorded after those copies) marks their arrival. Otherwise
    /// (sampled rows need their logits on the host, or a CPU device) the copies are made now.
    /// </summary>
    /// <param name="fence">Records a fence after the work queued so far; null: the tokens are ready at once.</param>
    public static PendingTokens Launch(Tensor lastLogits, IReadOnlyList<SequenceState> sequences, Func<IReadOnlyList<int>, string> decode,
        Func<IReadyFence>? fence)
    {
        using var scope = NewDisposeScope();
        var logits = lastLogits.to_type(ScalarType.Float32);
        var logprobs = logits.log_softmax(-1);
        var greedy = logits.argmax(-1);
        var allGreedy = sequences.All(s => s.IsFinished || s.Request.IsGreedy);
        if (allGreedy)
        {
            var picked = logprobs.gather(1, greedy.unsqueeze(1)).squeeze(1);
            Tensor ids, values;
            IReadyFence? ready = null;
            if (fence is not null && greedy.device.type == TorchSharp.DeviceType.CUDA)
            {
                ids = empty(greedy.Dims(), ScalarType.Int64).pin_memory();
                values = empty(picked.Dims(), ScalarType.Float32).pin_memory();
                ids.copy_(greedy, true);
                values.copy_(picked, true);
                ready = fence();
            }
            else
            {
                ids = greedy.cpu();
                values = picked.cpu();
                ready = fence?.Invoke();
            }
            return new PendingTokens(sequences, decode, lastLogits.size(-1), ids.DetachFromDisposeScope(), values.DetachFromDisposeScope(), ready);
        }
        var greedyIds = greedy.cpu().data<long>().ToArray();
        var chosen = new long[sequences.Count];
        for (var b = 0; b < sequences.Count; b++)
        {
            var s = sequences[b];
            if (s.IsFinished || s.Request.IsGreedy)
            {
                chosen[b] = greedyIds[b];
                continue;
            }
            var row = logits[b].cpu().data<float>().ToArray();
            chosen[b] = Sampler.Sample(row, s.Request.Temperature, s.Request.TopK, s.Request.TopP, s.Seed, s.Step);
        }
        var index = tensor(chosen, [sequences.Count, 1], dtype: ScalarType.Int64).to(logprobs.device);
        var chosenLogprobs = logprobs.gather(1, index).squeeze(1).cpu();
        return new PendingTokens(sequences, decode, lastLogits.size(-1), tensor(chosen).DetachFromDisposeScope(), chosenLogprobs.DetachFromDisposeScope(), null);
    }
}
