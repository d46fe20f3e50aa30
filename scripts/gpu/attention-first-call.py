"""First-call cost of the attention shapes a block meets, per SDPA backend, on the GPU machine's own PyTorch
(the libtorch the product runs against). A first call that plans per shape (cuDNN's attention) shows as a first
call much slower than the second. Usage: python3 scripts/gpu/attention-first-call.py"""
import time
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

dev = "cuda"
heads, d = 32, 128
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
      torch.cuda.get_device_name())
print("enabled: flash", torch.backends.cuda.flash_sdp_enabled(), "mem_efficient", torch.backends.cuda.mem_efficient_sdp_enabled(),
      "cudnn", torch.backends.cuda.cudnn_sdp_enabled(), "math", torch.backends.cuda.math_sdp_enabled())


def timed(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) * 1000


def case(b, t, length):
    q = torch.randn(b, heads, t, d, device=dev, dtype=torch.float16)
    k = torch.randn(b, heads, length, d, device=dev, dtype=torch.float16)
    v = torch.randn(b, heads, length, d, device=dev, dtype=torch.float16)
    mask = torch.ones(b, 1, t, length, device=dev, dtype=torch.bool)
    mask[:, :, :, -3:] = False
    return q, k, v, mask


def run(label, backends, shapes):
    out = []
    for (b, t, length) in shapes:
        q, k, v, mask = case(b, t, length)
        try:
            with sdpa_kernel(backends):
                first = timed(lambda: F.scaled_dot_product_attention(q, k, v, mask))
                second = timed(lambda: F.scaled_dot_product_attention(q, k, v, mask))
            out.append(f"B{b} T{t} L{length}: first {first:.1f} ms, second {second:.2f} ms")
        except RuntimeError as e:
            out.append(f"B{b} T{t} L{length}: not eligible ({str(e).splitlines()[0][:80]})")
    print(label)
    for line in out:
        print("  " + line)


# Each list of shapes is new to the process for the backend that runs it: decode (T=1) at rounded lengths, then a prefill.
def shapes(offset):
    return [(94 + offset, 1, 192), (94 + offset, 1, 256), (10 + offset, 1, 192), (38 + offset, 1, 256), (38 + offset, 128, 128)]


run("default order (what the product gets)", [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH], shapes(0))
run("cudnn only", [SDPBackend.CUDNN_ATTENTION], shapes(1))
run("efficient only", [SDPBackend.EFFICIENT_ATTENTION], shapes(2))
run("math only", [SDPBackend.MATH], shapes(3))
# The default priority order, without picking: whatever SDPA chooses on its own.
q, k, v, mask = case(50, 1, 320)
print("unconstrained first call B50 T1 L320: %.1f ms, second %.2f ms" % (timed(lambda: F.scaled_dot_product_attention(q, k, v, mask)), timed(lambda: F.scaled_dot_product_attention(q, k, v, mask))))
torch.backends.cuda.enable_cudnn_sdp(False)
q, k, v, mask = case(51, 1, 320)
print("cudnn disabled first call B51 T1 L320: %.1f ms, second %.2f ms" % (timed(lambda: F.scaled_dot_product_attention(q, k, v, mask)), timed(lambda: F.scaled_dot_product_attention(q, k, v, mask))))
q, k, v, mask = case(52, 128, 128)
print("cudnn disabled first call B52 T128 L128: %.1f ms, second %.2f ms" % (timed(lambda: F.scaled_dot_product_attention(q, k, v, mask)), timed(lambda: F.scaled_dot_product_attention(q, k, v, mask))))
# Linear layers at new row counts (cuBLAS picks per shape too, from heuristics).
w = torch.randn(4096, 4096, device=dev, dtype=torch.float16)
for m in (94, 10, 38, 94 * 128):
    x = torch.randn(m, 4096, device=dev, dtype=torch.float16)
    print("linear M%d: first %.2f ms, second %.2f ms" % (m, timed(lambda: F.linear(x, w)), timed(lambda: F.linear(x, w))))
