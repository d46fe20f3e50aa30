"""Two questions for the GPU machine's own PyTorch (the libtorch the product runs against), with the product's
allocator setting (expandable segments):
1. What does freeing a GPU batch's KV cache cost on the host: 64 tensors (a K and a V per layer of OPT-6.7B, batch 94,
   256 tokens) freed one by one, against one tensor holding all of them (64 views, then the one allocation)?
2. Do first calls of new matrix shapes (a new batch size) cost less with CUDA's modules loaded eagerly?
Usage: python3 scripts/gpu/free-and-first-call.py"""
import os, subprocess, sys, time

if len(sys.argv) > 1 and sys.argv[1] == "first-calls":
    t0 = time.perf_counter()
    import torch
    torch.zeros(1, device="cuda")
    init = (time.perf_counter() - t0) * 1000
    out = [f"{os.environ.get('CUDA_MODULE_LOADING', 'default')}: import + context {init:.0f} ms"]
    w = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    head = torch.randn(50272, 4096, device="cuda", dtype=torch.float16)
    for m in (94, 10, 38, 52):
        x = torch.randn(m, 4096, device="cuda", dtype=torch.float16)
        for name, weight in (("4096x4096", w), ("head", head)):
            times = []
            for _ in range(2):
                torch.cuda.synchronize(); t = time.perf_counter()
                torch.nn.functional.linear(x, weight)
                torch.cuda.synchronize(); times.append((time.perf_counter() - t) * 1000)
            out.append(f"  linear M{m} {name}: first {times[0]:.2f} ms, second {times[1]:.2f} ms")
    print("\n".join(out))
    sys.exit(0)

os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
import torch

print("torch", torch.__version__, torch.cuda.get_device_name(), os.environ["PYTORCH_CUDA_ALLOC_CONF"])
n = 94 * 32 * 256 * 128  # one layer's keys (or values) for a GPU batch of 94 sequences of 256 tokens, float16
for trial in range(3):
    tensors = [torch.empty(n, dtype=torch.float16, device="cuda") for _ in range(64)]
    torch.cuda.synchronize()
    t = time.perf_counter()
    tensors.clear()
    separate = (time.perf_counter() - t) * 1e6
    slab = torch.empty(64 * n, dtype=torch.float16, device="cuda")
    views = [slab[i * n:(i + 1) * n] for i in range(64)]
    torch.cuda.synchronize()
    t = time.perf_counter()
    views.clear()
    del slab
    together = (time.perf_counter() - t) * 1e6
    print(f"trial {trial}: 64 separate tensors freed in {separate:.0f} us ({separate / 64:.1f} us each); "
          f"64 views and one slab in {together:.0f} us")

for mode in ("LAZY", "EAGER"):
    env = dict(os.environ, CUDA_MODULE_LOADING=mode)
    print(subprocess.run([sys.executable, __file__, "first-calls"], env=env, capture_output=True, text=True).stdout, end="")
