#!/usr/bin/env python3
"""On the GPU machine: a decoding step's linear maps at few rows (OPT-6.7B's shapes, float16), timed by CUDA events in
PyTorch, each formulated several ways: the row-major product with the bias in the epilogue (the engine's), without it,
the transposed product W x^T, rows padded to 64, and under cuBLAS or cuBLASLt. Prints microseconds and the weights' read
rate; the question is which formulation reads the weights fastest at 32 and 64 rows. Each timing cycles through copies of
the weights that together exceed the card's L2 cache (50 MB on an H100), as a decoding step's layers do.
Usage: python3 scripts/gpu/small-batch-products.py [ITERS]"""
import sys
import torch
import torch.nn.functional as F

iters = int(sys.argv[1]) if len(sys.argv) > 1 else 200
dev = "cuda"
torch.manual_seed(0)
print(torch.cuda.get_device_name(0), torch.__version__)


def timed(fn):
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000 / iters


shapes = [("qkv", 12288, 4096), ("q", 4096, 4096), ("out", 4096, 4096), ("fc1", 16384, 4096), ("fc2", 4096, 16384)]
L2_SPAN = 400 * 2**20  # bytes of weights cycled through per timing
for lib in ("default", "cublas", "cublaslt"):
    if lib != "default":
        try:
            torch.backends.cuda.preferred_blas_library(lib)
        except Exception as e:  # noqa: BLE001
            print(f"{lib}: {e}")
            continue
    for rows in (32, 64):
        for name, n, k in shapes:
            copies = max(2, -(-L2_SPAN // (n * k * 2)))
            ws = [torch.randn(n, k, device=dev, dtype=torch.float16) * 0.02 for _ in range(copies)]
            b = torch.randn(n, device=dev, dtype=torch.float16)
            turn = [0]

            def nxt():
                turn[0] = (turn[0] + 1) % copies
                return ws[turn[0]]
            x = torch.randn(rows, k, device=dev, dtype=torch.float16)
            x3 = x.view(rows, 1, k)
            xt = x.t().contiguous()
            bcol = b.view(n, 1)
            xp = torch.zeros(max(64, rows), k, device=dev, dtype=torch.float16)
            variants = {
                "linear+bias 2d": lambda: F.linear(x, nxt(), b),
                "linear+bias 3d": lambda: F.linear(x3, nxt(), b),
                "linear": lambda: F.linear(x, nxt()),
                "W@xT": lambda: torch.mm(nxt(), xt),
                "addmm(bcol,W,xT)": lambda: torch.addmm(bcol, nxt(), xt),
                "addmm(bcol,W,xT).t().contiguous()": lambda: torch.addmm(bcol, nxt(), xt).t().contiguous(),
                "W@x.t() view": lambda: torch.mm(nxt(), x.t()),
                "pad64 linear+bias": lambda: F.linear(xp, nxt(), b),
            }
            bytes_ = n * k * 2
            cells = []
            for label, fn in variants.items():
                us = timed(fn)
                cells.append(f"{label} {us:6.1f} us ({bytes_ / us / 1e6:4.2f} TB/s)")
            print(f"{lib:8s} rows {rows:3d} {name}: " + "; ".join(cells), flush=True)
