using ActorInfer.Model.Layers;
using ActorInfer.Runtime.CpuAttention;
using static TorchSharp.torch;

namespace ActorInfer.Runtime.Tests;

/// <summary>Every CPU attention kernel computes attention over a strided cache prefix as the reference does.</summary>
public sealed class CpuAttentionKernelTests
{
    private const int Batch = 3, Heads = 4, Capacity = 12, Context = 9, HeadDim = 8;

    public static TheoryData<string> Kernels() => new()
    {
        "Sdpa", "Sdpa:5", "Float32", "Float32:7", "Float32Matmul:5", "Float32:4:3", "Float32Matmul:0:2", "Sdpa:0:3", "Matmul",
    };

    /// <summary>Query, the strided prefix of a cache (with the padding of a left-padded batch masked) and the float64 reference.</summary>
    private sealed class Case : IDisposable
    {
        private readonly TorchSharp.DisposeScope _scope = NewDisposeScope();

        public Case(ScalarType dtype, bool masked)
        {
            var generator = new TorchSharp.torch.Generator(11);
            Cache = new LayerKv((randn([Batch, Heads, Capacity, HeadDim], generator: generator) * 2).to_type(dtype),
                randn([Batch, Heads, Capacity, HeadDim], generator: generator).to_type(dtype));
            Q = randn([Batch, Heads, 1, HeadDim], generator: generator).to_type(dtype);
            Mask = masked ? arange(Context).view(1, 1, 1, -1).ge(tensor(new long[] { 0, 2, 5 }).view(-1, 1, 1, 1)) : null;
            var (keys, values) = Cache.Prefix(Context);
            Reference = OptMath.Attend(Q.to_type(ScalarType.Float64), keys.to_type(ScalarType.Float64), values.to_type(ScalarType.Float64), Mask);
        }

        public LayerKv Cache { get; }
        public Tensor Q { get; }
        public Tensor? Mask { get; }
        public Tensor Reference { get; }

        public Tensor Run(CpuAttentionKernel kernel)
        {
            var (keys, values) = Cache.Prefix(Context);
            var output = zeros([Batch, 1, Heads * HeadDim], dtype: Q.dtype);
            using var pool = kernel.Threads > 0 ? new TorchThreadPool(kernel.Threads, "test") : null;
            var scratchShape = kernel.ScratchShape(Batch * Heads, Capacity, HeadDim);
            using var scratch = scratchShape is null ? null : zeros(scratchShape, dtype: ScalarType.Float32);
            kernel.Attend(Q, keys, values, Mask, output, scratch, pool);
            return output;
        }

        public void Dispose() => _scope.Dispose();
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Float32DataGivesTheReferenceToFloat32Precision(string spec)
    {
        foreach (var masked in new[] { false, true })
        {
            using var c = new Case(ScalarType.Float32, masked);
            var output = c.Run(CpuAttentionKernel.Parse(spec));
            var error = (output.to_type(ScalarType.Float64) - c.Reference).abs().max().item<double>();
            Assert.True(error < 1e-5, $"{spec}, masked {masked}: max error {error}");
        }
    }

    [Theory]
    [InlineData("Float32")]
    [InlineData("Float32:5")]
    [InlineData("Float32Matmul:7:2")]
    public void Float16DataGivesTheReferenceRoundedToFloat16(string spec)
    {
        foreach (var masked in new[] { false, true })
        {
            using var c = new Case(ScalarType.Float16, masked);
            var output = c.Run(CpuAttentionKernel.Parse(spec)).to_type(ScalarType.Float64);
            // One float16 step at each value (at least at the output's mean magnitude, below which sums cancel).
            var scale = c.Reference.abs().mean().item<double>();
            var spacing = c.Reference.abs().clamp_min(scale).log2().floor().sub(10).exp2();
            var ulps = ((output - c.Reference).abs() / spacing).max().item<double>();
            Assert.True(ulps <= 1, $"{spec}, masked {masked}: {ulps} float16 steps off");
        }
    }

    [Fact]
    public void KernelsParseFromAndPrintToTheirCommandLineForm()
    {
        Assert.Equal(new CpuAttentionKernel(CpuAttentionKernelKind.Float32Matmul, 16, 15), CpuAttentionKernel.Parse("float32matmul:16:15"));
        Assert.Equal(new CpuAttentionKernel(CpuAttentionKernelKind.Sdpa), CpuAttentionKernel.Parse("Sdpa:0"));
        Assert.Equal("Float32:32:0", CpuAttentionKernel.Parse("Float32:32").Spec);
        foreach (var bad in new[] { "flash", "Sdpa:x", "Sdpa:-1", "Sdpa:1:2:3" })
            Assert.Throws<FormatException>(() => CpuAttentionKernel.Parse(bad));
    }

    [Fact]
    public void AKernelWithoutItsScratchOrPoolIsRefused()
    {
        using var c = new Case(ScalarType.Float32, masked: false);
        var (keys, values) = c.Cache.Prefix(Context);
        var output = zeros([Batch, 1, Heads * HeadDim]);
        Assert.Throws<ArgumentException>(() => new CpuAttentionKernel(CpuAttentionKernelKind.Float32, 4).Attend(c.Q, keys, values, null, output));
        Assert.Throws<ArgumentException>(() => new CpuAttentionKernel(CpuAttentionKernelKind.Sdpa, 4, 2).Attend(c.Q, keys, values, null, output));
    }

    [Fact]
    public void APoolLeavesLibtorchsThreadCountAsItFoundIt()
    {
        // The pool sets its threads' counts through the OpenMP runtime libtorch links, not libtorch's process-wide count.
        Assert.True(OpenMp.Available);
        var before = get_num_threads();
        using (var pool = new TorchThreadPool(2, "test"))
        {
            var seen = new int[2];
            pool.Run(i => seen[i] = get_num_threads());
            Assert.Equal([1, 1], seen);
            Assert.Equal(before, get_num_threads());
        }
        var onNewThread = 0;
        var thread = new Thread(() => onNewThread = get_num_threads());
        thread.Start();
        thread.Join();
        Assert.Equal(before, onNewThread);
    }

    [Fact]
    public void APoolReportsAFailureOfAnyOfItsThreads()
    {
        using var pool = new TorchThreadPool(3, "test");
        var e = Assert.Throws<InvalidOperationException>(() => pool.Run(i => { if (i == 2) throw new InvalidOperationException("thread 2"); }));
        Assert.Equal("thread 2", e.Message);
        var ran = 0;
        pool.Run(_ => Interlocked.Increment(ref ran));
        Assert.Equal(3, ran);
    }
}
