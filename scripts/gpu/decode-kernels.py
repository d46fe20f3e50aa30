# On the GPU machine: one OPT decoding layer as ActorInfer runs it (the same libtorch operations in the same order, float16),
# timed three ways, to tell where a decoding step's time goes:
#   eager:   the operations launched one by one (what the engine does today), wall time per layer;
#   kernels: the GPU time of each kernel (torch.profiler), summed per operation: the layer's floor without launch costs;
#   graph:   the same layer captured once as a CUDA graph and replayed (launch costs gone).
# Usage: python3 scripts/gpu/decode-kernels.py [--batch 32] [--context 544] [--hidden 4096] [--heads 32] [--ffn 16384]
#        [--layers 32] [--out DIR]    (writes DIR/decode-kernels.json and prints a table)
import argparse, json, os, time
import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--context", type=int, default=544)
ap.add_argument("--hidden", type=int, default=4096)
ap.add_argument("--heads", type=int, default=32)
ap.add_argument("--ffn", type=int, default=16384)
ap.add_argument("--layers", type=int, default=32)
ap.add_argument("--out", default=os.environ.get("OUT", "."))
a = ap.parse_args()
dev, dt = "cuda", torch.float16
torch.manual_seed(0)
h, b, L, nh = a.hidden, a.batch, a.context, a.heads
d = h // nh


def layer_weights():
    w = {}
    w["ln1_w"], w["ln1_b"] = torch.ones(h, device=dev, dtype=dt), torch.zeros(h, device=dev, dtype=dt)
    w["qkv_w"], w["qkv_b"] = torch.randn(3 * h, h, device=dev, dtype=dt) * 0.02, torch.zeros(3 * h, device=dev, dtype=dt)
    w["out_w"], w["out_b"] = torch.randn(h, h, device=dev, dtype=dt) * 0.02, torch.zeros(h, device=dev, dtype=dt)
    w["ln2_w"], w["ln2_b"] = torch.ones(h, device=dev, dtype=dt), torch.zeros(h, device=dev, dtype=dt)
    w["fc1_w"], w["fc1_b"] = torch.randn(a.ffn, h, device=dev, dtype=dt) * 0.02, torch.zeros(a.ffn, device=dev, dtype=dt)
    w["fc2_w"], w["fc2_b"] = torch.randn(h, a.ffn, device=dev, dtype=dt) * 0.02, torch.zeros(h, device=dev, dtype=dt)
    # The cache as the engine keeps it: [B, heads, capacity, d], the step's keys written at position L - 1.
    w["k"] = torch.randn(b, nh, L + 8, d, device=dev, dtype=dt)
    w["v"] = torch.randn(b, nh, L + 8, d, device=dev, dtype=dt)
    return w


layers = [layer_weights() for _ in range(a.layers)]
excluded = torch.zeros(b, 1, 1, L, dtype=torch.bool, device=dev)
scale = 1.0 / d ** 0.5


def layer(x, w, named=False):
    def rf(name):
        return torch.profiler.record_function(name) if named else _null
    with rf("layer_norm_1"):
        n = F.layer_norm(x, [h], w["ln1_w"], w["ln1_b"], 1e-5)
    with rf("qkv"):
        p = F.linear(n, w["qkv_w"], w["qkv_b"])
    row = p.stride(0)
    q = p.as_strided([b, nh, 1, d], [row, d, d, 1], 0)
    k = p.as_strided([b, nh, 1, d], [row, d, d, 1], h)
    v = p.as_strided([b, nh, 1, d], [row, d, d, 1], 2 * h)
    with rf("cache_write"):
        w["k"][:, :, L - 1:L].copy_(k)
        w["v"][:, :, L - 1:L].copy_(v)
    keys, values = w["k"][:, :, :L], w["v"][:, :, :L]
    with rf("scores"):
        s = q.reshape(b * nh, 1, d).bmm(keys.reshape(b * nh, L, d).transpose(1, 2))
        s.mul_(scale)
    with rf("mask"):
        s.view(b, nh, 1, L).masked_fill_(excluded, float("-inf"))
    with rf("softmax"):
        pw = s.softmax(-1)
    with rf("context"):
        c = pw.bmm(values.reshape(b * nh, L, d)).view(b, 1, h)
    with rf("out"):
        o = F.linear(c, w["out_w"], w["out_b"])
        o.add_(x)
    with rf("layer_norm_2"):
        n2 = F.layer_norm(o, [h], w["ln2_w"], w["ln2_b"], 1e-5)
    with rf("fc1_relu"):
        u = F.linear(n2, w["fc1_w"], w["fc1_b"])
        u.relu_()
    with rf("fc2"):
        y = F.linear(u, w["fc2_w"], w["fc2_b"])
        y.add_(o)
    return y


class _Null:
    def __enter__(self): return None
    def __exit__(self, *e): return False


_null = _Null()


def step(x):
    for w in layers:
        x = layer(x, w)
    return x


x0 = torch.randn(b, 1, h, device=dev, dtype=dt)
for _ in range(5): step(x0)
torch.cuda.synchronize()
n = 20
t = time.perf_counter()
for _ in range(n): step(x0)
torch.cuda.synchronize()
eager = (time.perf_counter() - t) / n * 1000

# Kernel times per operation, over one step.
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA, torch.profiler.ProfilerActivity.CPU]) as prof:
    x = x0
    for w in layers: x = layer(x, w, named=True)
    torch.cuda.synchronize()
names = ("layer_norm_1", "qkv", "cache_write", "scores", "mask", "softmax", "context", "out", "layer_norm_2", "fc1_relu", "fc2")
per_op = {}
for e in prof.key_averages():
    # A record_function's own row holds the device time of the kernels launched under it.
    dev_us = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
    if e.key in names:
        per_op[e.key] = dev_us / 1000 / a.layers
# The record_function spans show on the device too (as annotations): only the kernels themselves are summed.
kernel_rows = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA and e.key not in names]
kernels = sum(e.self_device_time_total if hasattr(e, "self_device_time_total") else e.self_cuda_time_total for e in kernel_rows) / 1000

# The whole step captured as one graph.
static_x = x0.clone()
s = torch.cuda.Stream()
s.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(s):
    for _ in range(3): step(static_x)
torch.cuda.current_stream().wait_stream(s)
g = torch.cuda.CUDAGraph()
with torch.cuda.graph(g):
    static_y = step(static_x)
for _ in range(5): g.replay()
torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(n): g.replay()
torch.cuda.synchronize()
graph = (time.perf_counter() - t) / n * 1000
weights = a.layers * (4 * h * h + 2 * h * a.ffn) * 2
cache = a.layers * 2 * b * nh * L * d * 2
result = {"gpu": torch.cuda.get_device_name(), "batch": b, "context": L, "layers": a.layers, "eager_ms_per_step": eager,
          "graph_ms_per_step": graph, "kernel_ms_per_step": kernels, "per_op_ms_per_layer": per_op,
          "bytes_per_step": weights + cache}
print(json.dumps(result, indent=1))
os.makedirs(a.out, exist_ok=True)
json.dump(result, open(os.path.join(a.out, "decode-kernels.json"), "w"), indent=1)

# Decoding attention alone at this shape: the products (as above) against libtorch's fused kernels, GPU time per layer.
def timed(fn, reps=50):
    for _ in range(3): fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps): fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


w = layers[0]
q = torch.randn(b, nh, 1, d, device=dev, dtype=dt)
keys, values = w["k"][:, :, :L], w["v"][:, :, :L]


def products():
    s = q.reshape(b * nh, 1, d).bmm(keys.reshape(b * nh, L, d).transpose(1, 2))
    s.mul_(scale)
    return s.softmax(-1).bmm(values.reshape(b * nh, L, d))


attention = {"products_ms": timed(products)}
from torch.nn.attention import sdpa_kernel, SDPBackend
for name, backend in (("flash_ms", SDPBackend.FLASH_ATTENTION), ("efficient_ms", SDPBackend.EFFICIENT_ATTENTION), ("cudnn_ms", SDPBackend.CUDNN_ATTENTION)):
    try:
        with sdpa_kernel(backend):
            attention[name] = timed(lambda: F.scaled_dot_product_attention(q, keys, values))
    except Exception as e:
        attention[name] = f"refused: {str(e).splitlines()[0][:120]}"
attention["kv_bytes_read_ms_at_3tbs"] = 2 * b * nh * L * d * 2 / 3.0e12 * 1000
print(json.dumps({"attention_per_layer": attention}, indent=1))
result["attention_per_layer"] = attention
json.dump(result, open(os.path.join(a.out, "decode-kernels.json"), "w"), indent=1)
