"""Which CUDA products give a row the same bits whatever else shares its call (run with the GPU machine's torch).

Prints, for each candidate, whether a row's result is the same when the call's other rows, its position in the call
or the call's row count change, and what row-chunked products cost against one call.
"""
import time
import torch
import torch.nn.functional as F

torch.manual_seed(0)
dev = "cuda"
h = torch.float16


def same(a, b):
    return bool(torch.equal(a, b))


def linear_rows(n, k, chunk):
    w = torch.randn(n, k, device=dev, dtype=h) * 0.02
    b = torch.randn(n, device=dev, dtype=h) * 0.02
    row = torch.randn(1, k, device=dev, dtype=h)
    outs = []
    for pos in [0, 1, 63, 64, 127, 200, 511, 1000, chunk - 1]:
        if pos >= chunk:
            continue
        x = torch.randn(chunk, k, device=dev, dtype=h)
        x[pos] = row[0]
        outs.append(F.linear(x, w, b)[pos])
    pos_ok = all(same(outs[0], o) for o in outs)
    sizes = {}
    for m in [1, 8, 32, 94, 128, 256, 512, 2048]:
        x = torch.randn(m, k, device=dev, dtype=h)
        x[0] = row[0]
        sizes[m] = same(F.linear(x, w, b)[0], outs[0])
    return pos_ok, sizes


for (n, k) in [(4096, 4096), (12288, 4096), (16384, 4096), (4096, 16384), (50272, 4096), (7168, 7168), (28672, 7168)]:
    for chunk in [64, 128, 256, 512, 2048]:
        pos_ok, sizes = linear_rows(n, k, chunk)
        print(f"linear n={n} k={k} chunk={chunk}: position-invariant {pos_ok}; same as other row counts {sizes}")

# addmm into a slice of a preallocated output against F.linear on the same rows
w = torch.randn(4096, 4096, device=dev, dtype=h); b = torch.randn(4096, device=dev, dtype=h)
x = torch.randn(512, 4096, device=dev, dtype=h); out = torch.empty(1024, 4096, device=dev, dtype=h)
torch.addmm(b, x[256:], w.t(), out=out[256:512])
print("addmm(out=slice) same as F.linear", same(out[256:512], F.linear(x[256:], w, b)))
# layer norm across row counts
w = torch.randn(4096, device=dev, dtype=h)
b = torch.randn(4096, device=dev, dtype=h)
row = torch.randn(4096, device=dev, dtype=h)
ref = None
res = {}
for m in [1, 3, 32, 94, 256, 16384]:
    x = torch.randn(m, 4096, device=dev, dtype=h)
    x[m // 2] = row
    y = F.layer_norm(x, [4096], w, b, 1e-5)[m // 2]
    ref = y if ref is None else ref
    res[m] = same(ref, y)
print("layer_norm same across row counts", res)

# causal SDPA across batch counts for one sequence
q = torch.randn(1, 32, 512, 128, device=dev, dtype=h)
kk = torch.randn(1, 32, 512, 128, device=dev, dtype=h)
v = torch.randn(1, 32, 512, 128, device=dev, dtype=h)
ref = F.scaled_dot_product_attention(q, kk, v, is_causal=True)
res = {}
for bsz in [2, 32, 94]:
    Q = torch.randn(bsz, 32, 512, 128, device=dev, dtype=h); K = torch.randn_like(Q); V = torch.randn_like(Q)
    Q[bsz - 1] = q[0]; K[bsz - 1] = kk[0]; V[bsz - 1] = v[0]
    res[bsz] = same(F.scaled_dot_product_attention(Q, K, V, is_causal=True)[bsz - 1], ref[0])
print("sdpa causal same across batch counts", res)
# strided (a slice of a longer, left-padded prompt)
Qp = torch.randn(1, 32, 600, 128, device=dev, dtype=h); Kp = torch.randn_like(Qp); Vp = torch.randn_like(Qp)
Qp[:, :, 88:] = q; Kp[:, :, 88:] = kk; Vp[:, :, 88:] = v
print("sdpa causal on a slice of a padded prompt same", same(F.scaled_dot_product_attention(Qp[:, :, 88:], Kp[:, :, 88:], Vp[:, :, 88:], is_causal=True), ref))

# bmm (decode attention by products) across batch counts
qd = torch.randn(32, 1, 128, device=dev, dtype=h)
kd = torch.randn(32, 128, 544, device=dev, dtype=h)
ref = torch.bmm(qd, kd)
res = {}
for bsz in [64, 94 * 32 // 32, 3008]:
    Qd = torch.randn(bsz, 1, 128, device=dev, dtype=h); Kd = torch.randn(bsz, 128, 544, device=dev, dtype=h)
    Qd[:32] = qd; Kd[:32] = kd
    res[bsz] = same(torch.bmm(Qd, Kd)[:32], ref)
print("bmm same across batch counts", res)


def timed(fn, reps=20):
    fn(); torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps * 1e3


for (n, k) in [(12288, 4096), (16384, 4096), (4096, 16384)]:
    w = torch.randn(n, k, device=dev, dtype=h) * 0.02
    b = torch.randn(n, device=dev, dtype=h)
    for m in [32, 94, 128, 256]:
        x = torch.randn(m, k, device=dev, dtype=h)
        print(f"decode n={n} k={k} m={m}: {timed(lambda: F.linear(x, w, b)):.4f} ms")
    x = torch.randn(16384, k, device=dev, dtype=h)
    print(f"prefill n={n} k={k} m=16384 one call: {timed(lambda: F.linear(x, w, b)):.3f} ms")
    for chunk in [128, 256, 512, 1024, 2048]:
        out = torch.empty(16384, n, device=dev, dtype=h)
        def chunked():
            for s in range(0, 16384, chunk):
                torch.addmm(b, x[s:s + chunk], w.t(), out=out[s:s + chunk])
        print(f"prefill n={n} k={k} chunks of {chunk}: {timed(chunked):.3f} ms")
