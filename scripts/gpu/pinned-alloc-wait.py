"""Does a pinned host allocation of a new size wait for the work the device has queued? Times pin_memory() of a new
size right after queueing about half a second of matrix products, against a size the host allocator already holds.
Usage: python3 scripts/gpu/pinned-alloc-wait.py"""
import time
import torch

print(torch.__version__, torch.cuda.get_device_name())
a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
torch.cuda.synchronize()


def queue_work(ms_target=500):
    t = time.perf_counter()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(400):
        a @ a
    end.record()
    return start, end, (time.perf_counter() - t) * 1000


held = torch.empty(64, dtype=torch.int64).pin_memory()  # the allocator now holds a block of this size class
for label, rows in [("a size class already held", 64), ("a new size class", 94 * 1000), ("another new size class", 38 * 10000)]:
    if label == "a size class already held":
        del held  # freed back to the allocator's cache
    start, end, queued_ms = queue_work()
    t = time.perf_counter()
    pinned = torch.empty(rows, dtype=torch.int64).pin_memory()
    took = (time.perf_counter() - t) * 1000
    torch.cuda.synchronize()
    print(f"{label} ({rows * 8} bytes): pin_memory took {took:.1f} ms with {start.elapsed_time(end):.0f} ms of products queued (queueing took {queued_ms:.1f} ms)")
