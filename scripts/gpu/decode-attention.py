"""Decoding attention (one query per sequence, a boolean mask over a cache prefix) by each way the product could run it,
on the GPU machine's own PyTorch: the first call of each new shape (a kernel that plans per shape shows there) and the
steady time per call, with the largest difference from cuDNN's result. Usage: python3 scripts/gpu/decode-attention.py"""
import time
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

dev = "cuda"
heads, d = 32, 128
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), torch.cuda.get_device_name())


def sdpa(backend):
    def f(q, k, v, mask):
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(q, k, v, mask)
    return f


def matmuls(softmax_dtype):
    # scores = q k^T / sqrt(d) with masked entries at -inf, softmax over the keys, then the weighted sum of the values.
    def f(q, k, v, mask):
        scores = torch.matmul(q, k.transpose(-1, -2))
        scores.mul_(d ** -0.5)
        scores.masked_fill_(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1, dtype=softmax_dtype).to(q.dtype)
        return torch.matmul(weights, v)
    return f


def fused(softmax_half):
    # One batched product adds the mask (an additive bias of 0 and -inf, made once per step and shared by the layers)
    # to the scaled scores; softmax (float accumulation inside); one batched product with the values.
    def f(q, k, v, mask):
        b, h, length = q.size(0), q.size(1), k.size(2)
        bias = bias_of(mask, h)
        scores = torch.baddbmm(bias, q.reshape(b * h, 1, d), k.view(b * h, length, d).transpose(1, 2), alpha=d ** -0.5)
        weights = torch.softmax(scores, dim=-1) if softmax_half else torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        return torch.bmm(weights, v.view(b * h, length, d)).view(b, h, 1, d)
    return f


biases = {}
def bias_of(mask, h):
    key = (mask.data_ptr(), mask.shape, h)
    if key not in biases:
        b, length = mask.size(0), mask.size(-1)
        bias = torch.zeros(b, h, 1, length, device=dev, dtype=torch.float16)
        bias.masked_fill_(~mask, float("-inf"))
        biases[key] = bias.view(b * h, 1, length)
    return biases[key]


ways = {
    "cudnn": sdpa(SDPBackend.CUDNN_ATTENTION),
    "efficient": sdpa(SDPBackend.EFFICIENT_ATTENTION),
    "math (sdpa)": sdpa(SDPBackend.MATH),
    "matmuls, float16 softmax": matmuls(torch.float16),
    "matmuls, float32 softmax": matmuls(torch.float32),
    "fused bias, half softmax": fused(True),
    "fused bias, float32 softmax": fused(False),
}


def case(b, length, filled):
    g = torch.Generator(device=dev).manual_seed(b * 1000 + length)
    q = torch.randn(b, heads, 1, d, device=dev, dtype=torch.float16, generator=g)
    # As in the product: a prefix of a cache with room for more tokens.
    k = torch.zeros(b, heads, length + 64, d, device=dev, dtype=torch.float16).narrow(2, 0, length)
    v = torch.zeros(b, heads, length + 64, d, device=dev, dtype=torch.float16).narrow(2, 0, length)
    k[:, :, :filled] = torch.randn(b, heads, filled, d, device=dev, dtype=torch.float16, generator=g)
    v[:, :, :filled] = torch.randn(b, heads, filled, d, device=dev, dtype=torch.float16, generator=g)
    mask = torch.zeros(b, 1, 1, length, device=dev, dtype=torch.bool)
    mask[:, :, :, :filled] = True
    mask[: b // 2, :, :, :7] = False  # left padding of half the batch
    return q, k, v, mask


def first_and_steady(f, args, iters=50):
    torch.cuda.synchronize()
    t = time.perf_counter()
    out = f(*args)
    torch.cuda.synchronize()
    first = (time.perf_counter() - t) * 1000
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(5):
        f(*args)
    start.record()
    for _ in range(iters):
        f(*args)
    end.record()
    torch.cuda.synchronize()
    return out, first, start.elapsed_time(end) / iters


shapes = [(128, 192, 150), (128, 256, 230), (94, 576, 530), (38, 256, 200), (10, 576, 520), (120, 320, 300)]
for offset, (b, length, filled) in enumerate(shapes):
    args = case(b, length, filled)
    ref = None
    print(f"B{b} L{length} (filled {filled}), K and V {2 * b * heads * length * d * 2 / 2**20:.0f} MiB:")
    for name, f in ways.items():
        try:
            out, first, steady = first_and_steady(f, args)
        except RuntimeError as e:
            print(f"  {name:26s} not eligible ({str(e).splitlines()[0][:70]})")
            continue
        if ref is None: ref = out.float()
        diff = (out.float() - ref).abs().max().item()
        gbs = 2 * b * heads * length * d * 2 / (steady / 1000) / 1e9
        print(f"  {name:26s} first {first:8.2f} ms, steady {steady * 1000:8.1f} us ({gbs:6.0f} GB/s of K and V), max diff from cudnn {diff:.2e}")
