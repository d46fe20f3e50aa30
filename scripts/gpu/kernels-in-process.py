# On the GPU machine: the device's kernels of one actorinfer run, each by name, from PyTorch's profiler in the same process.
# The self-contained build (.gpu/, unpacked by run.sh) is started inside this Python process through its .NET host
# (hostfxr, as the build's own launcher starts it), so the profiler, which traces every kernel of the process whatever
# thread or stream launched it, sees ours. Both use the same libtorch and CUDA runtime.
#
# Writes DIR/NAME-kernels.json (every kernel of the last measured run: name, start, duration, grid) and prints, for the
# decoding steps after the last prefill (the kernels after the run's last fused attention kernel), the device time of
# each kernel name per step and per decoder layer. With --reference it also profiles PyTorch's own decoding layer at the
# same shape (scripts/gpu/decode-kernels.py's operations, as one CUDA graph a step) and prints it the same way.
#
# Usage (with LD_LIBRARY_PATH as run.sh sets it; scripts/gpu/kernels-in-process.sh does that):
#   python3 scripts/gpu/kernels-in-process.py --name plain [--reference] -- bench --dummy --model opt-6.7b ... --repeat 1
import argparse, collections, ctypes, json, os, sys
import torch

ap = argparse.ArgumentParser()
ap.add_argument("--name", default="run")
ap.add_argument("--app", default=os.environ.get("GPU_APP_DIR", "/tmp/gpu-app"))
ap.add_argument("--out", default=os.environ.get("OUT", "."))
ap.add_argument("--layers", type=int, default=32)
ap.add_argument("--steps", type=int, default=31, help="decoding steps after the prefill (gen-len - 1)")
ap.add_argument("--reference", action="store_true")
ap.add_argument("--memory", action="store_true", help="no profiler: the caching allocator's statistics after the run instead")
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--context", type=int, default=544)
ap.add_argument("args", nargs=argparse.REMAINDER)
a = ap.parse_args()
args = a.args[1:] if a.args[:1] == ["--"] else a.args
os.makedirs(a.out, exist_ok=True)
torch.cuda.init()
torch.zeros(1, device="cuda")


def run_app(argv):
    """The app's Main with argv, in this process: hostfxr_main_startupinfo, as the build's apphost calls it."""
    fxr = ctypes.CDLL(os.path.join(a.app, "libhostfxr.so"))
    main = fxr.hostfxr_main_startupinfo
    main.restype = ctypes.c_int32
    main.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p), ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p]
    host = os.path.join(a.app, "actorinfer")
    full = [host] + argv
    c_argv = (ctypes.c_char_p * len(full))(*[s.encode() for s in full])
    sys.stdout.flush()
    return main(len(full), c_argv, host.encode(), a.app.encode(), os.path.join(a.app, "actorinfer.dll").encode())


def kernels_of(prof):
    rows = []
    for e in prof.events():
        if e.device_type != torch.autograd.DeviceType.CUDA:
            continue
        rng = e.time_range
        rows.append({"name": e.name, "start_us": rng.start, "dur_us": rng.end - rng.start})
    rows.sort(key=lambda r: r["start_us"])
    return rows


def is_fused_attention(name):
    low = name.lower()
    return "flash" in low or "fmha" in low or "attention" in low


def table(title, rows, steps, layers):
    by = collections.defaultdict(lambda: [0, 0.0])
    for r in rows:
        by[r["name"]][0] += 1
        by[r["name"]][1] += r["dur_us"]
    total = sum(v[1] for v in by.values())
    print(f"\n== {title}: {len(rows)} kernels, {total / steps:.1f} us a step, {total / steps / layers:.1f} us a layer ==")
    print(f"{'us/step':>9} {'us/layer':>9} {'calls/step':>10}  kernel")
    out = []
    for name, (n, t) in sorted(by.items(), key=lambda kv: -kv[1][1]):
        out.append({"name": name, "calls": n, "us_per_step": t / steps, "us_per_layer": t / steps / layers})
        print(f"{t / steps:9.1f} {t / steps / layers:9.2f} {n / steps:10.2f}  {name[:150]}")
    return {"total_us_per_step": total / steps, "kernels": out}


result = {}
if args and a.memory:
    torch.cuda.reset_peak_memory_stats()
    status = run_app(args)
    torch.cuda.synchronize()
    st = torch.cuda.memory_stats()
    free, total = torch.cuda.mem_get_info()
    keys = ["allocated_bytes.all.peak", "reserved_bytes.all.peak", "active_bytes.all.peak", "inactive_split_bytes.all.peak",
            "requested_bytes.all.peak", "num_alloc_retries", "num_ooms", "num_device_alloc", "num_device_free",
            "segment.all.peak", "oversize_allocations.peak"]
    result["memory"] = {k: st.get(k) for k in keys}
    result["memory"]["device_used_at_end"] = total - free
    # The allocator's segments at the end (the reserve stays mapped until emptied), by the stream that owns them: what is
    # reserved but not allocated, and where.
    by_stream = collections.defaultdict(lambda: {"segments": 0, "total": 0, "allocated": 0, "largest_free": 0})
    for seg in torch.cuda.memory_snapshot():
        key = f"stream {seg.get('stream', 0):#x} {seg.get('segment_type', '?')}"
        s = by_stream[key]
        s["segments"] += 1
        s["total"] += seg["total_size"]
        s["allocated"] += seg["allocated_size"]
        for blk in seg.get("blocks", []):
            if blk.get("state") == "inactive":
                s["largest_free"] = max(s["largest_free"], blk["size"])
    result["segments"] = by_stream
    print(f"\n{a.name}: exit status {status}")
    for k, v in result["memory"].items():
        print(f"  {k}: {v / 2**30:.2f} GiB" if isinstance(v, int) and v > 2**20 else f"  {k}: {v}")
    for k, v in sorted(result["segments"].items()):
        print(f"  segments of {k}: {v['segments']}, {v['total'] / 2**30:.2f} GiB reserved, {v['allocated'] / 2**30:.2f} GiB allocated,"
              f" largest free block {v['largest_free'] / 2**30:.2f} GiB")
elif args:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        status = run_app(args)
        torch.cuda.synchronize()
    print(f"\n{a.name}: exit status {status}")
    rows = kernels_of(prof)
    fused = [i for i, r in enumerate(rows) if is_fused_attention(r["name"])]
    # The last measured run: from its prefill's first fused attention kernel (layers of them before its decoding).
    first = fused[-a.layers] if len(fused) >= a.layers else 0
    last = fused[-1] if fused else 0
    decode = [r for r in rows[last + 1:] if r["dur_us"] < 400]  # the prefill's last layer's large products left out
    prefill = rows[max(first - 16, 0):last + 1]
    json.dump({"args": args, "status": status, "kernels": rows[max(first - 16, 0):]}, open(os.path.join(a.out, f"{a.name}-kernels.json"), "w"))
    result["decode"] = table(f"{a.name}: decoding, the last run's {a.steps} steps", decode, a.steps, a.layers)
    result["prefill"] = table(f"{a.name}: the last run's prefill (approximate bounds)", prefill, 1, a.layers)

if a.reference:
    import torch.nn.functional as F
    dev, dt = "cuda", torch.float16
    h, nh, ffn, b, L = 4096, 32, 16384, a.batch, a.context
    d = h // nh
    torch.manual_seed(0)

    def weights():
        return {"ln1": (torch.ones(h, device=dev, dtype=dt), torch.zeros(h, device=dev, dtype=dt)),
                "qkv": (torch.randn(3 * h, h, device=dev, dtype=dt) * .02, torch.zeros(3 * h, device=dev, dtype=dt)),
                "out": (torch.randn(h, h, device=dev, dtype=dt) * .02, torch.zeros(h, device=dev, dtype=dt)),
                "ln2": (torch.ones(h, device=dev, dtype=dt), torch.zeros(h, device=dev, dtype=dt)),
                "fc1": (torch.randn(ffn, h, device=dev, dtype=dt) * .02, torch.zeros(ffn, device=dev, dtype=dt)),
                "fc2": (torch.randn(h, ffn, device=dev, dtype=dt) * .02, torch.zeros(h, device=dev, dtype=dt)),
                "k": torch.randn(b, nh, L + 8, d, device=dev, dtype=dt), "v": torch.randn(b, nh, L + 8, d, device=dev, dtype=dt)}

    layers = [weights() for _ in range(a.layers)]
    excluded = torch.zeros(b, 1, 1, L, dtype=torch.bool, device=dev)

    def layer(x, w):
        n = F.layer_norm(x, [h], *w["ln1"], 1e-5)
        p = F.linear(n, *w["qkv"])
        row = p.stride(0)
        q = p.as_strided([b, nh, 1, d], [row, d, d, 1], 0)
        w["k"][:, :, L - 1:L].copy_(p.as_strided([b, nh, 1, d], [row, d, d, 1], h))
        w["v"][:, :, L - 1:L].copy_(p.as_strided([b, nh, 1, d], [row, d, d, 1], 2 * h))
        s = q.reshape(b * nh, 1, d).bmm(w["k"][:, :, :L].reshape(b * nh, L, d).transpose(1, 2))
        s.mul_(1 / d ** .5)
        s.view(b, nh, 1, L).masked_fill_(excluded, float("-inf"))
        c = s.softmax(-1).bmm(w["v"][:, :, :L].reshape(b * nh, L, d)).view(b, 1, h)
        o = F.linear(c, *w["out"])
        o.add_(x)
        u = F.linear(F.layer_norm(o, [h], *w["ln2"], 1e-5), *w["fc1"])
        u.relu_()
        y = F.linear(u, *w["fc2"])
        return y.add_(o)

    def step(x):
        for w in layers:
            x = layer(x, w)
        return x

    x0 = torch.randn(b, 1, h, device=dev, dtype=dt)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            step(x0)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        step(x0)
    for _ in range(3):
        g.replay()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(a.steps):
            g.replay()
        torch.cuda.synchronize()
    result["reference"] = table(f"PyTorch's layer at batch {b}, {L} cached, one graph a step", kernels_of(prof), a.steps, a.layers)

json.dump(result, open(os.path.join(a.out, f"{a.name}-kernel-table.json"), "w"), indent=1)
